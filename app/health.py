"""Liveness of the API process."""

from flask import Blueprint, jsonify

from app.openapi import json_response

bp = Blueprint("health", __name__)

OPENAPI = {
    "/health/live": {
        "get": {"summary": "The process is up", "responses": {"200": json_response({"type": "object"}, "alive")}},
    },
}


@bp.get("/health/live")
def live():
    return jsonify({"status": "ok"})
