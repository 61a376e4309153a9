"""Canonical JSON forms and Ed25519 signatures: the bytes a signature covers."""
