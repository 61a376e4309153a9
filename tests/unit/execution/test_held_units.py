"""The units a worker's heartbeat names as held come from Celery's own worker state: received and
not done, and no longer held once Celery drops them on losing its broker connection (before,
a list of our own kept naming them, so the sweeper never re-dispatched what the broker lost)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from celery.worker import state as worker_state
from celery.worker.consumer.consumer import Consumer

from beacon.messaging.celery_app import EXECUTE_UNIT, RUN_JOB
from workers.lifecycle import held_units


class Request:
    """What the worker state keeps of a Celery request (its real one needs a message and an app)."""

    def __init__(self, task_id: str, name: str, *args: object):
        self.id, self.name, self.args = task_id, name, list(args)
        self._eta_timer_entry = None  # a countdown's timer entry (none: no timer in these tests)


request = Request


@pytest.fixture(autouse=True)
def clean_state():
    worker_state.requests.clear()
    worker_state.reserved_requests.clear()
    worker_state.active_requests.clear()
    worker_state.scheduled_requests.clear()
    yield
    worker_state.requests.clear()


def test_held_are_the_unit_messages_received_and_not_done():
    running, waiting, countdown = request("a", EXECUTE_UNIT, 1), request("b", EXECUTE_UNIT, 2), request("c", EXECUTE_UNIT, 3)
    job = request("d", RUN_JOB, "job-1")
    for reserved in (running, waiting, job):
        worker_state.task_reserved(reserved)
    worker_state.task_accepted(running)
    worker_state.task_scheduled(countdown)
    assert sorted(held_units()) == [1, 2, 3]
    worker_state.task_ready(running)
    assert sorted(held_units()) == [2, 3]


def test_what_celery_drops_on_a_lost_connection_is_no_longer_held():
    running, waiting, countdown = request("a", EXECUTE_UNIT, 1), request("b", EXECUTE_UNIT, 2), request("c", EXECUTE_UNIT, 3)
    for reserved in (running, waiting):
        worker_state.task_reserved(reserved)
    worker_state.task_accepted(running)
    worker_state.task_scheduled(countdown)
    # Celery's own clean-up when the broker connection closes (a consumer with nothing else to clear)
    Consumer.on_close(SimpleNamespace(controller=None, task_buckets={}, timer=None, pool=None))
    assert held_units() == [1]  # the running unit still is; the dropped messages are not
