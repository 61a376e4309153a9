"""Celery app, broker transports, dispatch, the outbox, live events and trace propagation."""
