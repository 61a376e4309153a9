"""Celery beat: only the schedule (``beat.schedule``) and the app that runs it (``beat.app``).

The periodic tasks it names run in worker processes (``workers.periodic``).
"""
