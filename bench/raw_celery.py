"""The baseline for bench/pipeline.py: raw Celery with a no-op task, same broker and worker settings
(thread pool of 16, prefetch 1, late acks, task events on)."""

import os

from celery import Celery

app = Celery("raw", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["RAW_RESULT_BACKEND"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_send_task_events=True,  # as beacon's workers (-E, for Flower)
    task_default_queue="raw",
)


@app.task(name="raw.noop")
def noop(index: int) -> int:
    return index


@app.task(name="raw.done")
def done(results: list[int]) -> int:
    return len(results)
