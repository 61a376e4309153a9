"""Celery beat: the schedule of periodic work and the tasks it runs (executed by workers)."""
