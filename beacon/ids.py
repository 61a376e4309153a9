"""The shapes of the identifiers the API accepts: checked before any of them reaches the database.

A job id is 1 to 128 characters of ``[A-Za-z0-9._:-]`` (ingest refuses others with 400; reads
answer 404 for them without a query). An execution id is a positive integer below 2**63 (a
Postgres bigint), written in ASCII digits only: no sign, no separators, no other script's digits
(``str.isdigit`` accepts "²" and "١", which ``int`` then refuses or reads).
"""

from __future__ import annotations

import re

JOB_ID_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
MAX_JOB_ID_LENGTH = 128
MAX_BIGINT = 2**63 - 1

_JOB_ID = re.compile(JOB_ID_PATTERN)
_DIGITS = re.compile(r"[0-9]{1,19}")  # 2**63 - 1 has 19 digits


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def execution_id(value: object) -> int | None:
    """The execution id ``value`` spells, or None when it is not a positive bigint."""
    number = bigint(value)
    return number if number else None


def bigint(value: object) -> int | None:
    """A non-negative bigint written in plain ASCII digits, or None (cursors, sizes)."""
    if not isinstance(value, str) or _DIGITS.fullmatch(value) is None:
        return None
    number = int(value)
    return number if number <= MAX_BIGINT else None
