"""GET /ws: live events over a WebSocket (job.started, job.finished, transparency.appended).

Each message is the JSON event ``{type, time, data}``; ``?job_id=`` keeps one job's events.
Events come from Redis pub/sub; without REDIS_URL the socket says so and closes.
"""

from __future__ import annotations

import json

from flask import Blueprint, request
from flask_sock import Sock

from app.openapi import json_response
from app.services import services
from beacon.messaging.events import EVENTS_CHANNEL
from beacon.redis_clients import redis_client

bp = Blueprint("live", __name__)
sock = Sock()

OPENAPI = {
    "/ws": {
        "get": {
            "summary": "Live events over a WebSocket",
            "description": "Upgrade to a WebSocket; each message is {type, time, data}. Types: job.started, "
                           "job.finished, transparency.appended. ?job_id= keeps one job's events.",
            "parameters": [{"name": "job_id", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {"101": {"description": "switching protocols"},
                          "400": json_response({"type": "object"}, "not a WebSocket request")},
        },
    },
}


@sock.route("/ws", bp=bp)
def live(ws) -> None:  # noqa: ANN001
    settings = services().settings
    job_id = request.args.get("job_id")
    if not settings.redis_url:
        ws.send(json.dumps({"type": "error", "data": {"message": "live events need REDIS_URL; poll the API"}}))
        return
    pubsub = redis_client(settings.redis_url, timeout=None).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(EVENTS_CHANNEL)
    try:
        while ws.connected:
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            text = message["data"].decode()
            if job_id is None or json.loads(text).get("data", {}).get("job_id") == job_id:
                ws.send(text)
    finally:
        pubsub.close()
