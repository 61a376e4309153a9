"""Beacon Runner: the domain shared by the API, the workers and beat."""

__version__ = "0.1.0"
