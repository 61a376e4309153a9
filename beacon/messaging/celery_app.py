"""The Celery application factory: one config for API publishers, workers and beat."""

from __future__ import annotations

from celery import Celery

from beacon.messaging import file_transport  # noqa: F401  (filesystem:// with atomic writes)
from beacon.redis_clients import REQUEST_PATH_TIMEOUT_SECONDS
from beacon.settings import Settings

JOBS_QUEUE = "jobs"
RUN_JOB = "beacon.run_job"
EXECUTE_UNIT = "beacon.execute_unit"
RELAY_OUTBOX = "beacon.relay_outbox"
SWEEP = "beacon.sweep"
PURGE = "beacon.purge"
RETRY_PINS = "beacon.retry_pins"


REGION_QUEUE_PREFIX = "region."


def region_queue(region: str) -> str:
    return f"{REGION_QUEUE_PREFIX}{region}"


def queue_region(queue: str | None) -> str | None:
    """The region a region queue's name (or a message's routing key) names; None for any other."""
    if queue and queue.startswith(REGION_QUEUE_PREFIX):
        return queue[len(REGION_QUEUE_PREFIX):] or None
    return None


def _transport_options(settings: Settings, request_path: bool) -> dict:
    if settings.broker_url.startswith("filesystem"):
        folder = settings.data_dir / "broker"
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "polling_interval": 0.05,
        }
    # Longer than the longest job (60 min) so the broker never redelivers a unit still running;
    # the beat sweeper recovers crashed units far sooner through their leases. In the API (its
    # fast-path publish, off the request, and the request's own calls) a hung broker must cost no
    # more than a dead one: the outbox relay publishes whatever the fast path could not.
    timeout = REQUEST_PATH_TIMEOUT_SECONDS if request_path else 5
    return {"visibility_timeout": 2 * 60 * 60, "socket_timeout": timeout, "socket_connect_timeout": timeout}


def route_task(name: str, args: tuple, kwargs: dict, options: dict, task=None, **_: object) -> dict | None:  # noqa: ANN001
    """``task_routes``: ``execute_unit`` to its region's queue (from the message's ``region``),
    ``run_job`` to the jobs queue. An explicit ``queue`` given when publishing wins."""
    if name == EXECUTE_UNIT and (kwargs or {}).get("region"):
        return {"queue": region_queue(kwargs["region"])}
    if name == RUN_JOB:
        return {"queue": JOBS_QUEUE}
    return None


def task_queues(settings: Settings) -> list:
    """The jobs queue and one queue per configured region, declared so ``celery -A workers purge``,
    ``inspect active_queues`` and a plain ``celery -A workers worker`` see every one of them."""
    from kombu import Exchange, Queue

    from beacon.execution.regions import region_names

    names = [JOBS_QUEUE] + [region_queue(region) for region in region_names(settings)]
    # As Celery creates a queue it is sent to by name: a direct exchange and routing key of that name.
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in names]


def make_celery(settings: Settings, *, request_path: bool = False) -> Celery:
    """The Celery app; ``request_path`` (the API) gets the request path's broker timeouts and no
    publish retries, so a hung broker never stalls a request (the outbox covers the publish)."""
    app = Celery("beacon", broker=settings.broker_url, set_as_current=True)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=JOBS_QUEUE,
        task_queues=task_queues(settings),
        task_routes=(route_task,),
        broker_transport_options=_transport_options(settings, request_path),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=REQUEST_PATH_TIMEOUT_SECONDS if request_path else 3,
        task_publish_retry=not request_path,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2},
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app
