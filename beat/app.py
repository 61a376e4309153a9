"""The beat process's Celery app: the shared configuration plus the schedule.

``beacon beat`` runs it (``celery -A beat.app beat`` works too). Beat only publishes task
names, so it needs no task code from ``workers``.
"""

from beacon.logs import configure_logging
from beacon.messaging.celery_app import make_celery
from beacon.observability import celery_hooks
from beacon.settings import get_settings
from beat.schedule import beat_schedule

settings = get_settings()
configure_logging(settings.log_level)
app = make_celery(settings)
app.conf.beat_schedule = beat_schedule(settings)
celery_hooks.install(app, settings)  # Sentry (with Crons) in beat
