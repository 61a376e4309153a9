"""Cross-region analysis of recorded answers.

Beacon Runner asks the same question to the same model in several regions. This module
compares what each region answered and says, with the rule that decided it, how risky the
difference is. Everything is computed from the recorded executions; nothing is hard-coded.

Pure functions, no I/O. The result of :func:`analyse` is JSON-serialisable and
deterministic: the same executions in any order give the same result (keys and lists sorted).
See ``docs/analysis.md`` for the definitions and the rules.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any, Iterable, Mapping

from beacon.execution import classify
from beacon.execution.classify import (
    CONTENT_REFUSAL,
    REFUSAL_SIGNAL_PHRASES,
    SUBSTANTIVE,
    SUCCESS_CLASSIFICATIONS,
)
from beacon.statuses import UnitStatus

__all__ = [
    "MEASURE",
    "STOP_WORDS",
    "Thresholds",
    "analyse",
    "content_tokens",
    "is_success",
    "similarity",
    "tokenize",
    "unified_diff",
]

# --------------------------------------------------------------------------- vocabulary

RISK_LEVELS = ("low", "medium", "high")  # ascending

#: How many distinctive / omitted words are named per region in a difference or signal.
TOP_WORDS = 8

ROUND = 4  # decimals for similarities and divergence; comparisons use the rounded values

# English function words ignored by the similarity measure. Negations ("no", "not", "nor",
# "never") and "yes" are deliberately *not* here: they change what an answer says.
STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just me more most my myself of off on once only or other
    our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was
    we were what when where which while who whom whose why will with would you your yours
    yourself yourselves
    """.split()
)

_REFUSAL_PATTERNS = tuple(
    (phrase, re.compile(r"(?<![\w'])" + re.escape(phrase) + r"(?![\w'])")) for phrase in REFUSAL_SIGNAL_PHRASES
)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

MEASURE = {
    "name": "jaccard_tokens",
    "definition": (
        "|A∩B| / |A∪B| where A and B are the sets of lower-cased word tokens "
        "(runs of letters/digits, inner apostrophes kept) of the two outputs, "
        "English stop-words removed; if neither output has a non-stop-word token the sets "
        "keep the stop-words; two outputs with no token at all have similarity 1"
    ),
}

# --------------------------------------------------------------------------- thresholds

def _check_unit_interval(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Thresholds:
    """The numbers that turn similarities into agreement and divergence into risk.

    ``high_divergence`` (default 0.6, ``ANALYSIS_HIGH_DIVERGENCE`` in settings)
        divergence at or above which a question is high risk.
    ``medium_divergence`` (default 0.3, ``ANALYSIS_MEDIUM_DIVERGENCE``)
        divergence at or above which a question is (at least) medium risk.
        Must not exceed ``high_divergence``.
    ``similar`` (default 0.5, ``ANALYSIS_SIMILARITY``)
        pairwise similarity at or above which two substantive answers "agree"; below it the
        pair is reported as a disagreement in ``key_differences``.

    All three lie in [0, 1].
    """

    high_divergence: float = 0.6
    medium_divergence: float = 0.3
    similar: float = 0.5

    def __post_init__(self) -> None:
        for name in ("high_divergence", "medium_divergence", "similar"):
            object.__setattr__(self, name, _check_unit_interval(name, getattr(self, name)))
        if self.medium_divergence > self.high_divergence:
            raise ValueError(
                f"medium_divergence ({self.medium_divergence}) must not exceed "
                f"high_divergence ({self.high_divergence})"
            )

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# --------------------------------------------------------------------------- text measures


def _normalise(text: str) -> str:
    return " ".join(text.translate(_APOSTROPHES).lower().split())


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``, in order (stop-words included)."""
    return _WORD.findall(_normalise(text))


def content_tokens(text: str) -> list[str]:
    """Word tokens of ``text`` without the English stop-words, in order."""
    return [t for t in tokenize(text) if t not in STOP_WORDS]


def _token_sets(a: str, b: str) -> tuple[set[str], set[str]]:
    ta, tb = tokenize(a), tokenize(b)
    ca = {t for t in ta if t not in STOP_WORDS}
    cb = {t for t in tb if t not in STOP_WORDS}
    if not ca and not cb:  # e.g. "No." vs "Not at all": fall back to every token
        return set(ta), set(tb)
    return ca, cb


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' token sets (see :data:`MEASURE`), in [0, 1]."""
    sa, sb = _token_sets(a, b)
    union = sa | sb
    if not union:
        return 1.0
    return len(sa & sb) / len(union)


def _refusal_phrases(text: str) -> list[str]:
    normalised = _normalise(text)
    return [phrase for phrase, pattern in _REFUSAL_PATTERNS if pattern.search(normalised)]


def _distinctive(text: str, others: set[str]) -> tuple[list[str], int]:
    """Content words of ``text`` absent from ``others``: the first TOP_WORDS of them (most
    frequent first, ties in order of first appearance) and how many there are in all."""
    words = [t for t in content_tokens(text) if t not in others]
    counts = Counter(words)
    first = {}
    for position, word in enumerate(words):
        first.setdefault(word, position)
    ranked = sorted(counts, key=lambda word: (-counts[word], first[word]))
    return ranked[:TOP_WORDS], len(ranked)


def _sha256(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _r(value: float) -> float:
    return round(value, ROUND)


# --------------------------------------------------------------------------- units


def is_success(execution: Mapping[str, Any]) -> bool:
    """A unit succeeded when it completed and was classified substantive or content_refusal."""
    return classify.is_success(execution.get("status"), execution.get("classification"))


@dataclass(frozen=True)
class _Unit:
    region: str
    model_id: str
    question_id: str
    status: str | None
    classification: str | None
    output: str | None

    @property
    def success(self) -> bool:
        return classify.is_success(self.status, self.classification)

    @property
    def included(self) -> bool:
        return self.success and self.output is not None

    @property
    def excluded_reason(self) -> str | None:
        if self.status != UnitStatus.COMPLETED:
            return f"status {self.status}"
        if self.classification not in SUCCESS_CLASSIFICATIONS:
            return f"classification {self.classification}"
        if self.output is None:
            return "no output recorded"
        return None

    def preference(self) -> tuple:
        """Sort key choosing the attempt that represents a region (smallest wins)."""
        return (
            0 if self.included else 1,
            # a refusal is never hidden by a retry that answered
            0 if self.classification == CONTENT_REFUSAL else 1,
            str(self.status),
            str(self.classification),
            _sha256(self.output) or "",
        )


def _units(executions: Iterable[Mapping[str, Any]]) -> list[_Unit]:
    units = []
    for index, execution in enumerate(executions):
        if not isinstance(execution, Mapping):
            raise ValueError(f"execution #{index} is not a mapping: {execution!r}")
        fields = {}
        for key in ("region", "model_id", "question_id"):
            value = execution.get(key)
            if not isinstance(value, str) or not value:
                raise ValueError(f"execution #{index} needs a non-empty string {key!r}, got {value!r}")
            fields[key] = value
        output = execution.get("output")
        if output is not None and not isinstance(output, str):
            raise ValueError(f"execution #{index} has a non-string output: {type(output).__name__}")
        status = execution.get("status")
        classification = execution.get("classification")
        units.append(
            _Unit(
                status=None if status is None else str(status),
                classification=None if classification is None else str(classification),
                output=output,
                **fields,
            )
        )
    return units


def _group(units: list[_Unit]) -> dict[tuple[str, str], dict[str, list[_Unit]]]:
    """(question_id, model_id) -> region -> attempts."""
    groups: dict[tuple[str, str], dict[str, list[_Unit]]] = {}
    for unit in units:
        groups.setdefault((unit.question_id, unit.model_id), {}).setdefault(unit.region, []).append(unit)
    return groups


def _choose(attempts: list[_Unit]) -> _Unit:
    return min(attempts, key=_Unit.preference)


# --------------------------------------------------------------------------- analysis


def _pair_entry(a: _Unit, b: _Unit) -> dict[str, Any]:
    text_similarity = _r(similarity(a.output or "", b.output or ""))
    refused_a = a.classification == CONTENT_REFUSAL
    refused_b = b.classification == CONTENT_REFUSAL
    if refused_a and refused_b:
        basis, counted = "both_refused", 1.0
    elif refused_a or refused_b:
        basis, counted = "one_refused", 0.0
    else:
        basis, counted = "text", text_similarity
    return {
        "pair": [a.region, b.region],
        "similarity": text_similarity,
        "counted_as": counted,
        "basis": basis,
    }


def _signals(chosen: dict[str, _Unit], answering: list[str]) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    signals: list[dict[str, str]] = []
    phrases_by_region: dict[str, list[str]] = {}
    substantive = [r for r in answering if chosen[r].classification == SUBSTANTIVE]
    content_sets = {r: set(content_tokens(chosen[r].output or "")) for r in substantive}
    for region in answering:
        unit = chosen[region]
        if unit.classification == CONTENT_REFUSAL:
            signals.append({"region": region, "signal": "content_refusal"})
        phrases = _refusal_phrases(unit.output or "")
        phrases_by_region[region] = phrases
        for phrase in phrases:
            signals.append({"region": region, "signal": f"refusal_phrase:{phrase}"})
        if unit.classification == SUBSTANTIVE:
            others = [content_sets[r] for r in substantive if r != region]
            if len(others) >= 2:
                consensus = set.intersection(*others) - content_sets[region]
                if consensus:
                    terms = ",".join(sorted(consensus)[:TOP_WORDS])
                    signals.append({"region": region, "signal": f"omitted_consensus_terms:{terms}"})
    signals.sort(key=lambda s: (s["region"], s["signal"]))
    return signals, phrases_by_region


def _fmt(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def _analyse_question(question_id: str, model_id: str, by_region: dict[str, list[_Unit]], t: Thresholds) -> dict:
    chosen = {region: _choose(attempts) for region, attempts in by_region.items()}
    regions = {}
    for region in sorted(chosen):
        unit = chosen[region]
        regions[region] = {
            "status": unit.status,
            "classification": unit.classification,
            "output_sha256": _sha256(unit.output),
            "tokens": len(tokenize(unit.output)) if unit.output is not None else 0,
            "included": unit.included,
            "excluded_reason": None if unit.included else unit.excluded_reason,
            "attempts": len(by_region[region]),
        }

    answering = sorted(r for r, u in chosen.items() if u.included)
    refused = [r for r in answering if chosen[r].classification == CONTENT_REFUSAL]
    answered = [r for r in answering if chosen[r].classification == SUBSTANTIVE]

    pairs = [_pair_entry(chosen[a], chosen[b]) for a, b in combinations(answering, 2)]
    divergence = None
    if pairs:
        divergence = _r(1.0 - math.fsum(p["counted_as"] for p in pairs) / len(pairs))
        divergence = min(1.0, max(0.0, divergence))

    signals, phrases_by_region = _signals(chosen, answering)

    key_differences: list[dict[str, Any]] = []
    if refused and answered:
        key_differences.append(
            {
                "kind": "refusal",
                "refused": refused,
                "answered": answered,
                "description": f"{', '.join(refused)} refused (content_refusal) while "
                f"{', '.join(answered)} answered",
            }
        )
    for pair in pairs:
        if pair["basis"] != "text" or pair["similarity"] >= t.similar:
            continue
        a, b = pair["pair"]
        sa, sb = _token_sets(chosen[a].output or "", chosen[b].output or "")
        only_a, total_a = _distinctive(chosen[a].output or "", sb)
        only_b, total_b = _distinctive(chosen[b].output or "", sa)
        key_differences.append(
            {
                "kind": "disagreement",
                "pair": [a, b],
                "similarity": pair["similarity"],
                "only_in": {a: only_a, b: only_b},
                "only_in_total": {a: total_a, b: total_b},
                "description": f"{a} and {b} disagree (similarity {_fmt(pair['similarity'])} < "
                f"{_fmt(t.similar)}); only {a}: {', '.join(only_a) or '-'}; "
                f"only {b}: {', '.join(only_b) or '-'}",
            }
        )

    soft = [r for r in answered if phrases_by_region.get(r)]
    plain = [r for r in answered if not phrases_by_region.get(r)]

    if refused and answered:
        risk, rule = "high", (
            f"high: some regions refused while others answered ({', '.join(refused)} refused; "
            f"{', '.join(answered)} answered)"
        )
    elif divergence is not None and divergence >= t.high_divergence:
        risk, rule = "high", f"high: divergence {_fmt(divergence)} ≥ {_fmt(t.high_divergence)}"
    elif divergence is not None and divergence >= t.medium_divergence:
        risk, rule = "medium", f"medium: divergence {_fmt(divergence)} ≥ {_fmt(t.medium_divergence)}"
    elif soft and plain:
        risk, rule = "medium", (
            f"medium: refusal phrases in substantive answers of {', '.join(soft)} "
            f"but not of {', '.join(plain)}"
        )
    elif answering and not answered:
        risk, rule = "medium", f"medium: every answering region refused ({', '.join(refused)})"
    elif divergence is not None:
        risk, rule = "low", f"low: divergence {_fmt(divergence)} < {_fmt(t.medium_divergence)}"
    else:
        risk, rule = "low", (
            f"low: fewer than 2 regions have a successful answer ({len(answering)} of {len(chosen)}) and none refused"
        )

    return {
        "question_id": question_id,
        "model_id": model_id,
        "regions": regions,
        "compared_regions": answering,
        "censorship_signals": signals,
        "pairwise_similarity": pairs,
        "divergence": divergence,
        "key_differences": key_differences,
        "risk": risk,
        "risk_rule": rule,
    }


def _sort_keys(value: Any) -> Any:
    if type(value) is dict or isinstance(value, Mapping):  # a dict spares the slower Mapping check
        return {k: _sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sort_keys(v) for v in value]
    return value


def analyse(executions: Iterable[Mapping[str, Any]], thresholds: Thresholds = Thresholds()) -> dict:
    """Compare the regions' answers for every (question_id, model_id) in ``executions``.

    Returns a JSON-serialisable dict with ``measure``, ``thresholds``, ``questions`` (one
    entry per (question_id, model_id), sorted) and ``summary``. Raises ``ValueError`` when an
    execution lacks a region, model_id or question_id, or has a non-string output.
    """
    if not isinstance(thresholds, Thresholds):
        raise TypeError("thresholds must be a Thresholds instance")
    units = _units(executions)
    groups = _group(units)
    questions = [
        _analyse_question(question_id, model_id, groups[(question_id, model_id)], thresholds)
        for question_id, model_id in sorted(groups)
    ]

    by_risk = {level: 0 for level in RISK_LEVELS}
    for q in questions:
        by_risk[q["risk"]] += 1
    overall = max((q["risk"] for q in questions), key=RISK_LEVELS.index, default=None)
    regions_refused = sorted(
        {r for q in questions for r, entry in q["regions"].items() if entry["included"] and entry["classification"] == CONTENT_REFUSAL}
    )
    summary = {
        "questions_analysed": len(questions),
        "by_risk": by_risk,
        "overall_risk": overall,
        "regions_seen": sorted({u.region for u in units}),
        "regions_refused": regions_refused,
        "models_seen": sorted({u.model_id for u in units}),
        "units": len(units),
        "units_excluded": sum(1 for u in units if not u.included),
    }
    return _sort_keys(
        {
            "measure": dict(MEASURE),
            "thresholds": thresholds.as_dict(),
            "questions": questions,
            "summary": summary,
        }
    )


# --------------------------------------------------------------------------- diff


def _sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(s.strip() for s in _SENTENCE_END.split(line) if s.strip())
    return out


def unified_diff(
    executions: Iterable[Mapping[str, Any]],
    question_id: str,
    model_id: str,
    region_a: str,
    region_b: str,
    *,
    context: int = 3,
) -> str:
    """Unified diff, sentence by sentence, of what ``region_a`` and ``region_b`` answered.

    The ``---``/``+++`` labels are the region names. The attempt compared for each region is
    the one :func:`analyse` uses. Returns ``""`` when the two outputs have the same sentences.

    Raises ``KeyError`` when (question_id, model_id) or a region has no recorded execution,
    and ``ValueError`` when the region's execution has no output.
    """
    groups = _group(_units(executions))
    by_region = groups.get((question_id, model_id))
    if by_region is None:
        raise KeyError(f"no execution recorded for question {question_id!r} with model {model_id!r}")
    texts = []
    for region in (region_a, region_b):
        if region not in by_region:
            raise KeyError(
                f"no execution recorded in region {region!r} for question {question_id!r} "
                f"with model {model_id!r} (regions: {', '.join(sorted(by_region))})"
            )
        unit = _choose(by_region[region])
        if unit.output is None:
            raise ValueError(
                f"region {region!r} has no output for question {question_id!r} with model "
                f"{model_id!r} (status {unit.status}, classification {unit.classification})"
            )
        texts.append(_sentences(unit.output))
    lines = difflib.unified_diff(texts[0], texts[1], fromfile=region_a, tofile=region_b, n=context, lineterm="")
    return "\n".join(lines) + "\n" if texts[0] != texts[1] else ""
