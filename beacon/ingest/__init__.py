"""Signed JobSpec in: schema, question catalogue, trust store, rate limits, the ingestor."""
