"""Region queues in the Celery configuration (beacon.messaging.celery_app)."""

from __future__ import annotations

from beacon.messaging.celery_app import EXECUTE_UNIT, RUN_JOB, make_celery
from beacon.settings import Settings


def test_every_configured_region_has_a_declared_queue_and_units_route_by_region():
    app = make_celery(Settings.from_env({"CELERY_BROKER_URL": "memory://"}))
    queues = {q.name: q for q in app.conf.task_queues}
    assert sorted(queues) == ["jobs", "region.APAC", "region.EU", "region.US"]
    assert all(q.routing_key == name and q.exchange.name == name for name, q in queues.items())
    router = app.amqp.router
    assert router.route({}, EXECUTE_UNIT, (1,), {"region": "EU"})["queue"].name == "region.EU"
    assert router.route({}, RUN_JOB, ("job",), {})["queue"].name == "jobs"
    assert router.route({"queue": "region.US"}, EXECUTE_UNIT, (1,), {"region": "US"})["queue"].name == "region.US"
