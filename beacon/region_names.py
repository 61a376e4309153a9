"""Region names: case-insensitive, with the Go runner's aliases, one canonical upper-case name each.

Ingest maps every region a JobSpec names (``constraints.regions``, ``models[].regions``, the
cross-region wrapper's ``target_regions``) and the providers file's keys through
:func:`canonical_region`, so rows, queues (``region.<canonical>``), metrics and the analysis
all use the canonical name.
"""

from __future__ import annotations

#: Other spellings the Go runner accepted for a region.
ALIASES = {"ASIA": "APAC"}


def canonical_region(name: str) -> str:
    upper = name.strip().upper()
    return ALIASES.get(upper, upper)
