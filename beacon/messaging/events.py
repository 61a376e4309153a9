"""Live events: ``{type, time, data}`` on the Redis pub/sub channel ``beacon:events``.

Published after the database commit they announce, failing open: an event lost while Redis is
down never loses data (the database has it), it only leaves live followers to poll.
Types: ``job.started``, ``job.finished``, ``transparency.appended``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from beacon.redis_clients import redis_client
from beacon.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "beacon:events"


def publish_event(settings, event_type: str, payload: dict[str, Any]) -> bool:  # noqa: ANN001  (Settings)
    """Publish when REDIS_URL is set. Never raises; returns whether Redis took it."""
    if not settings.redis_url:
        return False
    message = json.dumps({"type": event_type, "time": isoformat(utcnow()), "data": payload})
    try:
        redis_client(settings.redis_url).publish(EVENTS_CHANNEL, message)
    except redis.RedisError as exc:
        log.warning("event not published: redis unavailable", extra={"event": event_type, "error": str(exc)})
        return False
    return True
