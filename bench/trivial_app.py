"""The baseline for bench/ingest.py: a trivial Flask endpoint under the same gunicorn settings."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/api/v1/jobs")
def accept():
    request.get_data()
    return jsonify({"id": "x", "status": "enqueued"}), 202
