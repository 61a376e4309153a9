"""The Celery application every worker runs: ``celery -A workers worker`` or ``beacon worker``.

It registers the job tasks (``workers.tasks``) and the periodic tasks beat names
(``workers.periodic``); beat's schedule lives in ``beat/`` and the two never import each other.
"""

from beacon.logs import configure_logging
from beacon.messaging.celery_app import make_celery
from beacon.observability import celery_hooks
from beacon.settings import get_settings

settings = get_settings()
configure_logging(settings.log_level)
app = make_celery(settings)
celery_hooks.install(app, settings)  # Sentry in worker processes, the worker's /metrics

import workers.lifecycle  # noqa: E402  (shutdown grace, calls of ended jobs aborted)
import workers.periodic  # noqa: E402,F401  (registers the periodic tasks)
import workers.tasks  # noqa: E402,F401  (registers the job tasks)

workers.lifecycle.install()
