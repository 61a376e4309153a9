"""The Celery application every worker runs: ``celery -A workers worker`` or ``beacon worker``."""

from beacon.celery_app import make_celery
from beacon.logs import configure_logging
from beacon.observability import celery_hooks
from beacon.settings import get_settings
from beat.schedule import beat_schedule

settings = get_settings()
configure_logging(settings.log_level)
app = make_celery(settings)
app.conf.beat_schedule = beat_schedule(settings)
celery_hooks.install(app, settings)  # Sentry in worker processes and beat, the worker's /metrics

import beat.tasks  # noqa: E402,F401  (registers the periodic tasks)
import workers.tasks  # noqa: E402,F401  (registers the job tasks)
