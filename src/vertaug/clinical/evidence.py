"""The literature evidence table behind every VP vs KP difference that vertaug reports.

One row of ``evidence.csv`` (package data) is one outcome of one study: the measure, the VP and KP values, the
comparator (sham, conservative care, none) and its value, an effect with its confidence interval where the study gives
one, n, design, an evidence level, the citation and a ``verified`` flag.

Conventions (fixed here, used by the report):

* ``direction`` says what the study found about the stated *measure* (its magnitude, not whether it is good):
  ``vp>kp``, ``kp>vp``, ``vp~kp`` (no significant difference reported), ``vp>comparator``, ``comparator>vp``,
  ``vp~comparator``, ``kp>comparator``, ``comparator>kp``, ``kp~comparator``, or ``info`` (no comparison).
* ``evidence_level``: Oxford CEBM 2009 codes ``1a`` (systematic review of RCTs), ``1b`` (RCT), ``2a`` (systematic
  review of cohort / mixed studies), ``2b`` (cohort, claims data, low-quality RCT), ``3`` (case-control, retrospective
  comparative), ``4`` (case series), ``5`` (expert opinion), plus ``econ`` (economic model) and ``guideline``.
* ``verified`` is true only where the figure was seen in a retrieved source (``source`` names it) or the project's
  literature notes mark it [V] (docs/references.md); ``association_only`` flags observational results (claims data) that must not be read as
  causal.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import FileFormatError, ParameterError

__all__ = [
    "EvidenceRow",
    "Pooled",
    "METRICS",
    "DIRECTIONS",
    "EVIDENCE_LEVELS",
    "REPORT_CLAIMS",
    "load_evidence",
    "rows_for",
    "pooled",
    "rows_supporting",
]

#: The metrics the report uses; every row belongs to exactly one.
METRICS: tuple[str, ...] = (
    "leakage",
    "kyphotic_angle",
    "height",
    "pain_vas",
    "disability",
    "sham",
    "procedure_time",
    "cost",
    "new_fracture",
    "infection",
    "embolism",
    "mortality",
    "guideline",
)

DIRECTIONS: frozenset[str] = frozenset(
    {
        "vp>kp", "kp>vp", "vp~kp",
        "vp>comparator", "comparator>vp", "vp~comparator",
        "kp>comparator", "comparator>kp", "kp~comparator",
        "info",
    }
)

EVIDENCE_LEVELS: frozenset[str] = frozenset({"1a", "1b", "2a", "2b", "3", "4", "5", "econ", "guideline"})

#: Claims the report makes, as (metric, direction that backs the claim).
REPORT_CLAIMS: dict[str, tuple[str, str]] = {
    "leakage_vp_gt_kp": ("leakage", "vp>kp"),
    "angle_kp_gt_vp": ("kyphotic_angle", "kp>vp"),
    "height_kp_gt_vp": ("height", "kp>vp"),
    "pain_vp_eq_kp": ("pain_vas", "vp~kp"),
    "disability_vp_eq_kp": ("disability", "vp~kp"),
    "vp_eq_sham": ("sham", "vp~comparator"),
    "time_kp_gt_vp": ("procedure_time", "kp>vp"),
    "cost_kp_gt_vp": ("cost", "kp>vp"),
}

_META_WORDS = ("meta-analysis", "systematic review")


@dataclass(frozen=True)
class EvidenceRow:
    """One outcome of one study. Missing numbers are ``None`` (never 0)."""

    id: str
    metric: str
    outcome: str
    measure: str
    unit: str
    vp_value: float | None
    kp_value: float | None
    comparator: str
    comparator_value: float | None
    effect: float | None
    effect_measure: str
    ci_low: float | None
    ci_high: float | None
    p_value: str
    n: int | None
    studies: int | None
    design: str
    evidence_level: str
    direction: str
    citation: str
    year: int
    journal: str
    verified: bool
    association_only: bool
    source: str
    note: str

    @property
    def is_meta_analysis(self) -> bool:
        return any(w in self.design.lower() for w in _META_WORDS)

    def short_citation(self) -> str:
        first = self.citation.split(",")[0].strip()
        return f"{first} {self.year}, {self.journal}"


@dataclass(frozen=True)
class Pooled:
    """What the meta-analyses in the table say about one metric."""

    metric: str
    rows: tuple[EvidenceRow, ...]
    direction: str  # the common direction of the rows, or "mixed"
    unit: str  # unit of vp_range / kp_range (the commonest unit among rows that give VP or KP values)
    vp_range: tuple[float, float] | None
    kp_range: tuple[float, float] | None
    effects: tuple[tuple[str, str, float, float | None, float | None], ...]  # (citation, measure, effect, lo, hi)


def _opt_float(name: str, raw: str, rid: str) -> float | None:
    if raw.strip() == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise FileFormatError(f"evidence row {rid!r}: column {name}={raw!r} is not a number.",
                              "write a plain number or leave the cell empty.") from None
    if not math.isfinite(v):
        raise FileFormatError(f"evidence row {rid!r}: column {name}={raw!r} is not finite.", "use a finite number.")
    return v


def _opt_int(name: str, raw: str, rid: str) -> int | None:
    v = _opt_float(name, raw, rid)
    if v is None:
        return None
    if v != int(v) or v < 0:
        raise FileFormatError(f"evidence row {rid!r}: column {name}={raw!r} is not a count.", "write a whole number >= 0.")
    return int(v)


def _bool(name: str, raw: str, rid: str) -> bool:
    key = raw.strip().lower()
    if key not in ("true", "false"):
        raise FileFormatError(f"evidence row {rid!r}: column {name}={raw!r} is not true/false.", "write true or false.")
    return key == "true"


def _parse_row(rec: dict[str, str]) -> EvidenceRow:
    rid = rec.get("id", "").strip() or "<no id>"
    names = [f.name for f in fields(EvidenceRow)]
    missing = [n for n in names if n not in rec]
    if missing:
        raise FileFormatError(f"evidence table lacks columns {missing}.", "restore the header of evidence.csv.")
    floats = ("vp_value", "kp_value", "comparator_value", "effect", "ci_low", "ci_high")
    out: dict[str, object] = {}
    for n in names:
        raw = rec[n] if rec[n] is not None else ""
        if n in floats:
            out[n] = _opt_float(n, raw, rid)
        elif n in ("n", "studies"):
            out[n] = _opt_int(n, raw, rid)
        elif n in ("verified", "association_only"):
            out[n] = _bool(n, raw, rid)
        elif n == "year":
            y = _opt_int(n, raw, rid)
            if y is None or not 1950 <= y <= 2100:
                raise FileFormatError(f"evidence row {rid!r}: year={raw!r} is missing or implausible.",
                                      "give the publication year.")
            out[n] = y
        else:
            out[n] = raw.strip()
    row = EvidenceRow(**out)  # type: ignore[arg-type]
    _check_row(row)
    return row


def _check_row(r: EvidenceRow) -> None:
    def bad(problem: str, fix: str) -> FileFormatError:
        return FileFormatError(f"evidence row {r.id!r}: {problem}", fix)

    if r.metric not in METRICS:
        raise bad(f"metric {r.metric!r} is not one of {METRICS}.", "use one of the report metrics.")
    if r.direction not in DIRECTIONS:
        raise bad(f"direction {r.direction!r} is unknown.", f"use one of {sorted(DIRECTIONS)}.")
    if r.evidence_level not in EVIDENCE_LEVELS:
        raise bad(f"evidence_level {r.evidence_level!r} is unknown.", f"use one of {sorted(EVIDENCE_LEVELS)}.")
    if not r.citation or not r.journal:
        raise bad("citation or journal is empty.", "name the authors and the journal.")
    if (r.ci_low is None) != (r.ci_high is None):
        raise bad("only one end of the confidence interval is given.", "give both ends or neither.")
    if r.ci_low is not None and r.ci_high is not None and (r.effect is None or not r.ci_low <= r.effect <= r.ci_high):
        raise bad("the effect is missing or lies outside its confidence interval.", "check the numbers.")
    if r.metric == "mortality" and not r.association_only:
        raise bad("a mortality row must be flagged association_only.", "set association_only to true.")


@lru_cache(maxsize=4)
def _load(path: str | None) -> tuple[EvidenceRow, ...]:
    if path is None:
        text = resources.files("vertaug.clinical").joinpath("evidence.csv").read_text(encoding="utf-8")
        label = "vertaug/clinical/evidence.csv"
    else:
        p = Path(path)
        if not p.is_file():
            raise FileFormatError(f"evidence table {p} does not exist.", "give the path of an evidence CSV.")
        text = p.read_text(encoding="utf-8")
        label = str(p)
    reader = csv.DictReader(text.splitlines())
    rows = tuple(_parse_row(rec) for rec in reader)
    if not rows:
        raise FileFormatError(f"evidence table {label} has no rows.", "restore the package data file.")
    ids = [r.id for r in rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise FileFormatError(f"evidence table {label} repeats ids {dup}.", "give every row a unique id.")
    return rows


def load_evidence(path: str | Path | None = None) -> list[EvidenceRow]:
    """All rows of the evidence table (the bundled one unless ``path`` is given), checked on load."""
    return list(_load(None if path is None else str(path)))


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ParameterError(f"Unknown evidence metric {metric!r}.", f"use one of {', '.join(METRICS)}.")
    return metric


def rows_for(metric: str, *, verified_only: bool = False) -> list[EvidenceRow]:
    """Rows for one metric, best evidence first (level, then year, newest first)."""
    _check_metric(metric)
    order = {lvl: i for i, lvl in enumerate(("1a", "1b", "2a", "2b", "3", "4", "5", "econ", "guideline"))}
    rows = [r for r in load_evidence() if r.metric == metric and (r.verified or not verified_only)]
    return sorted(rows, key=lambda r: (order[r.evidence_level], -r.year, r.id))


def pooled(metric: str) -> Pooled | None:
    """Summary of the meta-analysis / systematic-review rows of a metric, or ``None`` if there are none."""
    rows = tuple(r for r in rows_for(metric) if r.is_meta_analysis)
    if not rows:
        return None
    dirs = {r.direction for r in rows if r.direction != "info"}
    direction = dirs.pop() if len(dirs) == 1 else ("mixed" if dirs else "info")

    def span(vals: list[float]) -> tuple[float, float] | None:
        return (min(vals), max(vals)) if vals else None

    valued = [r for r in rows if r.vp_value is not None or r.kp_value is not None]
    units = [r.unit for r in valued]
    unit = max(sorted(set(units)), key=units.count) if units else ""
    same = [r for r in valued if r.unit == unit]
    effects = tuple(
        (r.short_citation(), r.effect_measure, r.effect, r.ci_low, r.ci_high) for r in rows if r.effect is not None
    )
    return Pooled(
        metric=metric,
        rows=rows,
        direction=direction,
        unit=unit,
        vp_range=span([r.vp_value for r in same if r.vp_value is not None]),
        kp_range=span([r.kp_value for r in same if r.kp_value is not None]),
        effects=effects,  # type: ignore[arg-type]
    )


def rows_supporting(claim: str) -> list[EvidenceRow]:
    """Rows whose finding backs one of :data:`REPORT_CLAIMS` (an empty list means the claim is not backed)."""
    try:
        metric, direction = REPORT_CLAIMS[claim]
    except KeyError:
        raise ParameterError(f"Unknown report claim {claim!r}.", f"use one of {', '.join(REPORT_CLAIMS)}.") from None
    return [r for r in rows_for(metric) if r.direction == direction]
