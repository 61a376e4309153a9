"""Observability shared by every role: Sentry, Prometheus metrics, health probes, unit instrumentation."""
