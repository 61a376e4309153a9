"""The Celery application every worker runs: ``celery -A workers worker`` or ``beacon worker``."""

from beacon.celery_app import make_celery
from beacon.logs import configure_logging
from beacon.settings import get_settings
from beat.schedule import beat_schedule

settings = get_settings()
configure_logging(settings.log_level)
app = make_celery(settings)
app.conf.beat_schedule = beat_schedule(settings)

import beat.tasks  # noqa: E402,F401  (registers the periodic tasks)
import workers.tasks  # noqa: E402,F401  (registers the job tasks)
