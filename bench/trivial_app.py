"""The baselines for bench/ingest.py, served with the same gunicorn settings as the API:

* ``POST /api/v1/jobs``: reads the body and answers 202 (the HTTP stack's ceiling);
* ``POST /durable/api/v1/jobs``: the same, plus one INSERT of the body and a commit through the
  same database layer as the API (``beacon.db``): the floor any durable ingest pays.
"""

import os

from flask import Flask, jsonify, request
from sqlalchemy import text

app = Flask(__name__)
_db = None


def database():
    global _db
    if _db is None:
        from beacon.db import database_for

        _db = database_for(os.environ["DATABASE_URL"])
        with _db.session() as session:
            session.execute(text("CREATE TABLE IF NOT EXISTS bench_durable (id bigserial PRIMARY KEY, body text)"))
    return _db


@app.post("/api/v1/jobs")
def accept():
    request.get_data()
    return jsonify({"id": "x", "status": "enqueued"}), 202


@app.post("/durable/api/v1/jobs")
def accept_durably():
    with database().session() as session:
        session.execute(text("INSERT INTO bench_durable (body) VALUES (:body)"), {"body": request.get_data(as_text=True)})
    return jsonify({"id": "x", "status": "enqueued"}), 202


@app.get("/health/live")
def live():
    return "ok"
