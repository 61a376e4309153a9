"""Pin retries back off exponentially from PIN_RETRY_BASE_SECONDS up to PIN_RETRY_MAX_SECONDS."""

from __future__ import annotations

from beacon.evidence.bundles import pin_backoff
from beacon.settings import Settings


def test_pin_backoff_doubles_then_caps():
    settings = Settings.from_env({"PIN_RETRY_BASE_SECONDS": "30", "PIN_RETRY_MAX_SECONDS": "300"})
    assert [pin_backoff(settings, n) for n in range(0, 7)] == [30, 30, 60, 120, 240, 300, 300]
