"""The signed timestamp must lie within TIMESTAMP_MAX_AGE_MINUTES back and TIMESTAMP_MAX_SKEW_MINUTES ahead."""

from __future__ import annotations

from datetime import timedelta

import pytest

from beacon.errors import Invalid
from beacon.ingest.ingestor import check_timestamp_window
from beacon.settings import Settings
from beacon.timeutil import isoformat, utcnow

SETTINGS = Settings.from_env({"TIMESTAMP_MAX_AGE_MINUTES": "10", "TIMESTAMP_MAX_SKEW_MINUTES": "5"})


@pytest.mark.parametrize("offset", [timedelta(minutes=-9), timedelta(0), timedelta(minutes=4)])
def test_inside_the_window(offset):
    check_timestamp_window(SETTINGS, isoformat(utcnow() + offset))


@pytest.mark.parametrize("offset, reason", [(timedelta(minutes=-11), "too_old"),
                                            (timedelta(minutes=6), "too_far_in_future")])
def test_outside_the_window(offset, reason):
    with pytest.raises(Invalid) as caught:
        check_timestamp_window(SETTINGS, isoformat(utcnow() + offset))
    assert caught.value.code == "timestamp_invalid"
    assert caught.value.details == {"reason": reason}


@pytest.mark.parametrize("text", ["yesterday", "", "2025-13-01T00:00:00Z"])
def test_unparseable(text):
    with pytest.raises(Invalid) as caught:
        check_timestamp_window(SETTINGS, text)
    assert caught.value.details == {"reason": "format_invalid"}
