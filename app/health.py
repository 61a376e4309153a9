"""Liveness of the API process."""

from flask import Blueprint, jsonify

bp = Blueprint("health", __name__)


@bp.get("/health/live")
def live():
    return jsonify({"status": "ok"})
