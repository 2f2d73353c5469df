"""Clinical grades and scores for one fractured vertebra, from morphometry and clinical flags.

Every function takes plain values; ``None`` means *unknown* and stays unknown (it is never replaced by a default
silently). Each result carries its reasons, so a reader sees which input decided what.

* Genant semiquantitative grade (Genant 1993, JBMR 8:1137): deformity ``d = 1 - H_reduced / H_reference`` for
  wedge (``Ha/Hp``), biconcave (``Hm/Hp``) and crush (``Hp`` / posterior height of the neighbours); grade 0 for
  ``d < 0.20``, 1 for ``0.20 <= d < 0.25``, 2 for ``0.25 <= d <= 0.40``, 3 for ``d > 0.40`` (grade 3 is "> 40 %";
  the same edges as ``anatomy.morphometry``); defined for T4-L4.
* Quantitative morphometry (6-point): a ratio ``Ha/Hp``, ``Hm/Hp``, ``Hp/Hp_above``, ``Hp/Hp_below`` at or below
  0.80 (a 20 % reduction, the fixed ISCD threshold) marks a deformity.
* AO Spine-DGOU OF classification (Schnake 2018): decision order tension band failure -> OF5; both endplates
  (frame loss, collapse, pincer) -> OF4; one endplate with distinct (> 1/5) posterior wall involvement -> OF3,
  without -> OF2; oedema only -> OF1.
* OF-score (AO Spine pocket card, "not validated yet"): 2 x OF class; T-score < -3 or CT <= 90 HU +1; deformity
  progression +1 / none -1; pain (VAS, under WHO step II analgesia) >= 5 +1 / < 5 -1; neurological deficit +2;
  mobilisation impossible +1 / possible -1; ASA > 3, mFI > 2, anticoagulation -1 each (at most -2). Bands: <= 5
  conservative, 6 either, > 6 surgery. The card scores an unknown parameter 0; we do the same and also report the
  score range the unknowns allow: the band is ``indeterminate`` when that range spans two bands.
* SINS (Fisher 2010): location 3/2/1/0, pain 3/1/0, lesion 2/1/0, alignment 4/2/0, collapse 3/2/1/0, posterolateral
  involvement 3/1/0; 0-6 stable, 7-12 potentially unstable, 13-18 unstable.
* CT density class of the trabecular L1 (Pickhardt 2013, Ann Intern Med 158:588; 1867 adults of one US academic centre
  with abdominal CT for other indications and DXA within 6 months): <= 160 HU was 90 % sensitive and <= 110 HU more
  than 90 % specific for DXA osteoporosis. "normal" above 160 HU, "osteopenia" (indeterminate) in 110-160 HU,
  "osteoporosis" at or below 110 HU: the same constants and function as ``anatomy.morphometry.density_class`` (one
  place). The 135 / 90 HU used here before are not in that paper's results.
* Eligibility checklists for vertebral augmentation: NICE TA279, VERTOS II/IV inclusion, RAND/UCLA pathway
  (Hirsch 2018), multisociety 2014; each criterion is met, unmet or unknown, with its reason.

Research and teaching only: these scores must not choose a patient's treatment.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..anatomy.morphometry import density_class
from ..errors import LevelNotFoundError, ParameterError, check_range


__all__ = [
    "GENANT_FLOORS",
    "GENANT_LEVELS",
    "QM_RATIO_THRESHOLD",
    "OF_CLASSES",
    "OF_BANDS",
    "SINS_BANDS",
    "CHECKLISTS",
    "GenantResult",
    "QMResult",
    "OFClassification",
    "OFScore",
    "SINSResult",
    "MorphologyInputs",
    "Assessment",
    "genant_grade",
    "genant_sq",
    "qm_sixpoint",
    "ct_density_class",
    "of_classification",
    "of_inputs_from_morphology",
    "of_score",
    "sins",
    "sins_location_points",
    "sins_collapse_from_deformity",
    "eligibility",
    "eligibility_summary",
    "morphology_from_level",
    "morphology_for",
    "assess",
    "print_assessment",
]

#: Genant grade edges of the deformity fraction: grade 1 from 0.20, grade 2 from 0.25, grade 3 above 0.40.
GENANT_FLOORS: tuple[float, float, float] = (0.20, 0.25, 0.40)
#: Levels for which Genant defined the grades.
GENANT_LEVELS: tuple[str, ...] = (*(f"T{i}" for i in range(4, 13)), "L1", "L2", "L3", "L4")
#: QM: a height ratio at or below this marks a deformity (20 % reduction, fixed ISCD threshold).
QM_RATIO_THRESHOLD = 0.80
#: Comparisons at a band edge are made with this tolerance, so 1 - 0.80 counts as 0.20.
_EPS = 1e-9

OF_CLASSES: tuple[str, ...] = ("OF1", "OF2", "OF3", "OF4", "OF5")
#: OF-score bands of the pocket card: (upper bound inclusive, name).
OF_BANDS: tuple[tuple[float, str], ...] = ((5, "conservative"), (6, "conservative or surgery"), (float("inf"), "surgery"))
SINS_BANDS: tuple[tuple[float, str], ...] = ((6, "stable"), (12, "potentially unstable"), (18, "unstable"))
CHECKLISTS: tuple[str, ...] = ("nice", "vertos", "rand", "multisociety")

OF_SCORE_HU_MAX = 90.0
OF_SCORE_T_SCORE = -3.0

# ----------------------------------------------------------------------------------------------------------- checks


def _opt_range(name: str, value: float | None, low: float, high: float, unit: str = "") -> float | None:
    return None if value is None else check_range(name, value, low, high, unit)


def _opt_bool(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ParameterError(f"Parameter {name}={value!r} is not true, false or unknown (None).",
                         "give True, False, or leave it out when it is not known.")


def _choice(name: str, value: str | None, options: dict[str, int]) -> int | None:
    if value is None:
        return None
    key = str(value).strip().lower()
    if key not in options:
        raise ParameterError(f"Parameter {name}={value!r} is not one of {sorted(options)}.",
                             f"use one of {', '.join(sorted(options))}, or leave it out when unknown.")
    return options[key]


def _band(score: float, bands: tuple[tuple[float, str], ...]) -> str:
    for upper, name in bands:
        if score <= upper:
            return name
    return bands[-1][1]


# ---------------------------------------------------------------------------------------------------- Genant and QM


@dataclass(frozen=True)
class GenantResult:
    grade: int | None  # 0..3, None when no deformity could be computed
    type: str | None  # "none" | "wedge" | "biconcave" | "crush"
    deformity: float | None  # the largest deformity fraction found
    complete: bool  # False when one of the three deformity types could not be assessed
    reasons: tuple[str, ...]


def genant_grade(deformity: float) -> int:
    """Genant grade 0..3 of a deformity fraction (height loss / reference height)."""
    d = check_range("deformity", deformity, 0.0, 1.0, "(fraction)")
    g1, g2, g3 = GENANT_FLOORS
    if d > g3 + _EPS:
        return 3
    if d >= g2 - _EPS:
        return 2
    return 1 if d >= g1 - _EPS else 0


def _ratio(name: str, value: float | None) -> float | None:
    return _opt_range(name, value, 1e-6, 3.0, "(ratio)")


def _crush_ratio(r_above: float | None, r_below: float | None) -> float | None:
    """Hp / mean(Hp_above, Hp_below) from the two ratios Hp/Hp_above and Hp/Hp_below (harmonic combination)."""
    known = [r for r in (r_above, r_below) if r is not None]
    if not known:
        return None
    return len(known) / sum(1.0 / r for r in known)


def genant_sq(
    ratio_ha_hp: float | None = None,
    ratio_hm_hp: float | None = None,
    ratio_hp_above: float | None = None,
    ratio_hp_below: float | None = None,
    *,
    level: str | None = None,
) -> GenantResult:
    """Genant SQ grade and type from the morphometric height ratios (see module docstring)."""
    ratios = {
        "wedge": _ratio("ratio_ha_hp", ratio_ha_hp),
        "biconcave": _ratio("ratio_hm_hp", ratio_hm_hp),
        "crush": _crush_ratio(_ratio("ratio_hp_above", ratio_hp_above), _ratio("ratio_hp_below", ratio_hp_below)),
    }
    reasons: list[str] = []
    if level is not None and level.upper() not in GENANT_LEVELS:
        reasons.append(f"{level} is outside T4-L4, where Genant defined the grades: read the grade with care")
    deform = {k: max(0.0, 1.0 - r) for k, r in ratios.items() if r is not None}
    missing = [k for k, r in ratios.items() if r is None]
    if not deform:
        return GenantResult(None, None, None, False, tuple(reasons + ["no height ratio available: grade unknown"]))
    for k in missing:
        reasons.append(f"{k} deformity not assessable (ratio unknown): the grade is a lower bound")
    kind = max(deform, key=lambda k: deform[k])
    d = deform[kind]
    g = genant_grade(d)
    ref = {"wedge": "Ha/Hp", "biconcave": "Hm/Hp", "crush": "Hp/Hp(neighbours)"}[kind]
    reasons.append(
        f"largest deformity {d:.1%} ({kind}, {ref} = {1 - d:.2f}) -> grade {g} "
        "(0 < 20 % <= 1 < 25 % <= 2 <= 40 % < 3)"
    )
    return GenantResult(g, kind if g > 0 else "none", d, not missing, tuple(reasons))


@dataclass(frozen=True)
class QMResult:
    status: str  # "met" (deformity present) | "unmet" | "unknown"
    reduced: tuple[str, ...]  # names of the ratios at or below the threshold
    reasons: tuple[str, ...]


def qm_sixpoint(
    ratio_ha_hp: float | None = None,
    ratio_hm_hp: float | None = None,
    ratio_hp_above: float | None = None,
    ratio_hp_below: float | None = None,
) -> QMResult:
    """Six-point QM deformity test with the fixed 20 % threshold (ratio <= 0.80)."""
    vals = {
        "Ha/Hp": _ratio("ratio_ha_hp", ratio_ha_hp),
        "Hm/Hp": _ratio("ratio_hm_hp", ratio_hm_hp),
        "Hp/Hp(above)": _ratio("ratio_hp_above", ratio_hp_above),
        "Hp/Hp(below)": _ratio("ratio_hp_below", ratio_hp_below),
    }
    reduced = tuple(k for k, v in vals.items() if v is not None and v <= QM_RATIO_THRESHOLD + _EPS)
    unknown = [k for k, v in vals.items() if v is None]
    reasons = [f"{k} = {v:.2f}" for k, v in vals.items() if v is not None]
    if reduced:
        return QMResult("met", reduced, tuple(reasons + [f"{', '.join(reduced)} <= {QM_RATIO_THRESHOLD:.2f}"]))
    if unknown:
        return QMResult("unknown", (), tuple(reasons + [f"{', '.join(unknown)} unknown; the others above threshold"]))
    return QMResult("unmet", (), tuple(reasons + [f"all ratios > {QM_RATIO_THRESHOLD:.2f}"]))


def ct_density_class(hu: float | None) -> str | None:
    """Pickhardt 2013 CT density class of the (L1) trabecular HU: normal (> 160 HU), osteopenia (110-160 HU) or
    osteoporosis (<= 110 HU), by :func:`vertaug.anatomy.morphometry.density_class`."""
    v = _opt_range("hu", hu, -1100.0, 3100.0, "HU")
    if v is None:
        return None
    return density_class(v)


# ------------------------------------------------------------------------------------------------ OF classification


@dataclass(frozen=True)
class OFClassification:
    of_class: str | None  # the class when the inputs decide it, else None
    possible: tuple[str, ...]  # classes the inputs allow ("none" = no osteoporotic fracture)
    reasons: tuple[str, ...]


def _normalize_of_class(of_class: str | int) -> str:
    key = str(of_class).strip().upper()
    if key.isdigit():
        key = f"OF{key}"
    if key not in OF_CLASSES:
        raise ParameterError(f"Unknown OF class {of_class!r}.", "use OF1, OF2, OF3, OF4 or OF5 (or 1..5).")
    return key


def of_classification(
    *,
    tension_band_failure: bool | None = None,
    both_endplates: bool | None = None,
    one_endplate: bool | None = None,
    posterior_wall_distinct: bool | None = None,
    posterior_wall_fraction: float | None = None,
    oedema: bool | None = None,
) -> OFClassification:
    """AO Spine-DGOU OF class by the card's decision order; unknown answers keep every class they allow."""
    tb = _opt_bool("tension_band_failure", tension_band_failure)
    both = _opt_bool("both_endplates", both_endplates)
    one = _opt_bool("one_endplate", one_endplate)
    pw = _opt_bool("posterior_wall_distinct", posterior_wall_distinct)
    oed = _opt_bool("oedema", oedema)
    frac = _opt_range("posterior_wall_fraction", posterior_wall_fraction, 0.0, 1.0, "(fraction)")
    if frac is not None:
        from_frac = frac > 0.2
        if pw is not None and pw != from_frac:
            raise ParameterError(
                f"posterior_wall_distinct={pw} contradicts posterior_wall_fraction={frac:g} (distinct means > 1/5).",
                "give one of the two, or make them agree.",
            )
        pw = from_frac
    possible: list[str] = []
    reasons: list[str] = []

    def done() -> OFClassification:
        uniq = tuple(dict.fromkeys(possible))
        return OFClassification(uniq[0] if len(uniq) == 1 else None, uniq, tuple(reasons))

    if tb:
        possible.append("OF5")
        reasons.append("tension band failure (distraction, rotation or translation) -> OF5")
        return done()
    if tb is None:
        possible.append("OF5")
        reasons.append("tension band state unknown: OF5 not excluded")
    if both:
        possible.append("OF4")
        reasons.append("both endplates deformed / frame loss / collapse -> OF4")
        return done()
    if both is None:
        possible.append("OF4")
        reasons.append("both-endplate involvement unknown: OF4 not excluded")
    one_classes = ["OF3"] if pw else (["OF2"] if pw is False else ["OF2", "OF3"])
    pw_text = {True: "distinct (> 1/5) posterior wall involvement", False: "no or minor (< 1/5) posterior wall "
               "involvement", None: "posterior wall involvement unknown"}[pw]
    if one:
        possible.extend(one_classes)
        reasons.append(f"one endplate deformed, {pw_text} -> {' or '.join(one_classes)}")
        return done()
    if one is None:
        possible.extend(one_classes)
        reasons.append(f"single-endplate deformity unknown: {' or '.join(one_classes)} not excluded")
    if oed:
        possible.append("OF1")
        reasons.append("oedema without deformity -> OF1")
    elif oed is None:
        possible.extend(["OF1", "none"])
        reasons.append("oedema unknown (needs MRI STIR): OF1 or no fracture")
    else:
        possible.append("none")
        reasons.append("no oedema and no deformity -> no osteoporotic fracture")
    return done()


def of_inputs_from_morphology(genant_grade_value: int | None, genant_type: str | None) -> tuple[dict[str, bool | None], str]:
    """What CT morphometry alone says about the OF decision questions (a conservative reading, see docs).

    A Genant grade >= 1 means at least one endplate is deformed; a crush deformity (all heights reduced against the
    neighbours) is read as collapse, i.e. both endplates. Nothing else can be told from heights: tension band,
    posterior wall and oedema stay unknown.
    """
    out: dict[str, bool | None] = {"both_endplates": None, "one_endplate": None}
    if genant_grade_value is None:
        return out, "no Genant grade: endplate questions unknown"
    if genant_grade_value == 0:
        return out, "height loss < 20 %: endplate deformation neither shown nor excluded by heights"
    if genant_type == "crush":
        out["both_endplates"] = True
        return out, f"Genant grade {genant_grade_value} crush: read as collapse (both endplates)"
    out["one_endplate"] = True
    return out, f"Genant grade {genant_grade_value} {genant_type}: at least one endplate deformed"


# ------------------------------------------------------------------------------------------------------- OF score


@dataclass(frozen=True)
class OFScore:
    score: int | None  # the card score (unknown parameters count 0); None without an OF class
    band: str  # conservative | conservative or surgery | surgery | indeterminate | unknown
    reasons: tuple[str, ...]
    score_min: int | None = None
    score_max: int | None = None
    card_band: str | None = None  # the band of ``score`` as the card reads it

    def __iter__(self) -> Iterator[Any]:
        return iter((self.score, self.band, self.reasons))


def of_score(
    of_class: str | int | None,
    *,
    t_score: float | None = None,
    hu: float | None = None,
    deformity_progression: bool | None = None,
    vas: float | None = None,
    neuro_deficit: bool | None = None,
    mobilisation_possible: bool | None = None,
    asa_gt3: bool | None = None,
    mfi_gt2: bool | None = None,
    anticoagulation: bool | None = None,
) -> OFScore:
    """OF-score of the AO Spine-DGOU pocket card; iterate it as ``(score, band, reasons)``."""
    t = _opt_range("t_score", t_score, -10.0, 5.0)
    h = _opt_range("hu", hu, -1100.0, 3100.0, "HU")
    v = _opt_range("vas", vas, 0.0, 10.0, "(0-10 scale)")
    prog = _opt_bool("deformity_progression", deformity_progression)
    neuro = _opt_bool("neuro_deficit", neuro_deficit)
    mob = _opt_bool("mobilisation_possible", mobilisation_possible)
    health = {"ASA > 3": _opt_bool("asa_gt3", asa_gt3), "mFI > 2": _opt_bool("mfi_gt2", mfi_gt2),
              "anticoagulation": _opt_bool("anticoagulation", anticoagulation)}
    if of_class is None:
        return OFScore(None, "unknown", ("OF class unknown: the score needs the morphology (2 x class)",))
    cls = _normalize_of_class(of_class)
    reasons: list[str] = []
    lo = hi = score = 0

    def add(name: str, pts: int | None, options: tuple[int, ...], why: str, unknown_why: str = "unknown") -> None:
        nonlocal lo, hi, score
        if pts is None:
            lo += min(options)
            hi += max(options)
            what = unknown_why
            reasons.append(f"{name}: {what} -> 0 per card (could be {', '.join(f'{o:+d}' for o in options)})")
        else:
            lo += pts
            hi += pts
            score += pts
            reasons.append(f"{name}: {why} -> {pts:+d}")

    morph = 2 * int(cls[-1])
    add("morphology", morph, (morph,), f"{cls} (2 x {cls[-1]})")
    # Osteoporosis severity: +1 if either criterion is met; 0 only when it is known that neither is.
    if (t is not None and t < OF_SCORE_T_SCORE) or (h is not None and h <= OF_SCORE_HU_MAX + _EPS):
        why = " and ".join(x for x in (f"T-score {t:g} < -3" if t is not None and t < OF_SCORE_T_SCORE else "",
                                       f"CT {h:.0f} HU <= 90" if h is not None and h <= OF_SCORE_HU_MAX + _EPS else "")
                           if x)
        add("bone density", 1, (0, 1), why)
    elif t is not None or h is not None:
        known = ", ".join(x for x in (f"T-score {t:g}" if t is not None else "",
                                      f"CT {h:.0f} HU" if h is not None else "") if x)
        if t is not None and h is not None:
            add("bone density", 0, (0, 1), f"{known}: neither T < -3 nor <= 90 HU")
        else:
            add("bone density", None, (0, 1), "", f"{known} not severe, the other measure unknown")
    else:
        add("bone density", None, (0, 1), "", "T-score and CT HU unknown")
    add("deformity progression", None if prog is None else (1 if prog else -1), (1, -1),
        "progression" if prog else "no progression")
    add("pain under WHO-II analgesia", None if v is None else (1 if v >= 5 - _EPS else -1), (1, -1),
        f"VAS {v:g} {'>=' if v is not None and v >= 5 - _EPS else '<'} 5" if v is not None else "")
    add("neurological deficit", None if neuro is None else (2 if neuro else 0), (2, 0),
        "N2-N4 deficit" if neuro else "none")
    add("mobilisation under analgesia", None if mob is None else (-1 if mob else 1), (1, -1),
        "possible" if mob else "not possible")
    known_minus = sum(1 for x in health.values() if x)
    n_unknown = sum(1 for x in health.values() if x is None)
    h_pts = -min(2, known_minus)
    h_lo = -min(2, known_minus + n_unknown)
    names = [k for k, x in health.items() if x]
    lo += h_lo
    hi += h_pts
    score += h_pts
    unk = [k for k, x in health.items() if x is None]
    reasons.append(
        f"health status: {', '.join(names) if names else 'no listed risk'}"
        f"{' (unknown: ' + ', '.join(unk) + ', 0 per card)' if unk else ''} -> {h_pts:+d} (max -2)"
    )
    card_band = _band(score, OF_BANDS)
    lo_band, hi_band = _band(lo, OF_BANDS), _band(hi, OF_BANDS)
    band = card_band if lo_band == hi_band else "indeterminate"
    reasons.append(f"card score {score} -> {card_band}; with the unknowns the score could be {lo}..{hi}"
                   + ("" if band != "indeterminate" else f" ({lo_band} to {hi_band}): band indeterminate"))
    return OFScore(score, band, tuple(reasons), lo, hi, card_band)


# ------------------------------------------------------------------------------------------------------------ SINS

_SINS_LOCATION: dict[str, int] = {
    **{lv: 3 for lv in ("C1", "C2", "C7", "T1", "T2", "T11", "T12", "L1", "L5", "S1")},
    **{lv: 2 for lv in ("C3", "C4", "C5", "C6", "L2", "L3", "L4")},
    **{f"T{i}": 1 for i in range(3, 11)},
    **{f"S{i}": 0 for i in range(2, 6)},
}
_SINS_PAIN = {"mechanical": 3, "occasional": 1, "none": 0}
_SINS_LESION = {"lytic": 2, "mixed": 1, "blastic": 0}
_SINS_ALIGNMENT = {"subluxation": 4, "deformity": 2, "normal": 0}
_SINS_COLLAPSE = {">50": 3, "<50": 2, "involved_no_collapse": 1, "none": 0}
_SINS_POSTEROLATERAL = {"bilateral": 3, "unilateral": 1, "none": 0}


@dataclass(frozen=True)
class SINSResult:
    score: int | None  # None while any component is unknown
    band: str  # stable | potentially unstable | unstable | unknown
    reasons: tuple[str, ...]
    score_min: int = 0
    score_max: int = 18

    def __iter__(self) -> Iterator[Any]:
        return iter((self.score, self.band, self.reasons))


def sins_location_points(level: str) -> int:
    """SINS location points of a level name (junctional 3, mobile 2, semirigid 1, rigid 0)."""
    key = str(level).strip().upper().removeprefix("VERTEBRAE_")
    if key not in _SINS_LOCATION:
        raise ParameterError(f"Level {level!r} has no SINS location.", "use a level name such as 'L1' or 'T8'.")
    return _SINS_LOCATION[key]


def sins_collapse_from_deformity(deformity: float | None) -> tuple[str | None, str]:
    """SINS collapse category from the morphometric deformity; below 20 % it is left unknown (tumour involvement
    of a body without collapse cannot be seen in heights)."""
    d = _opt_range("deformity", deformity, 0.0, 1.0, "(fraction)")
    if d is None:
        return None, "deformity unknown"
    if d >= 0.5 - _EPS:
        return ">50", f"height loss {d:.0%} >= 50 % (counted as > 50 %)"
    if d >= GENANT_FLOORS[0] - _EPS:
        return "<50", f"height loss {d:.0%} < 50 %"
    return None, f"height loss {d:.0%} < 20 %: collapse vs no collapse with body involvement not decidable from heights"


def sins(
    *,
    level: str | None = None,
    pain: str | None = None,
    lesion: str | None = None,
    alignment: str | None = None,
    collapse: str | None = None,
    posterolateral: str | None = None,
) -> SINSResult:
    """Spinal Instability Neoplastic Score; iterate it as ``(score, band, reasons)``."""
    comps = [
        ("location", None if level is None else sins_location_points(level), (0, 3), level),
        ("pain", _choice("pain", pain, _SINS_PAIN), (0, 3), pain),
        ("bone lesion", _choice("lesion", lesion, _SINS_LESION), (0, 2), lesion),
        ("alignment", _choice("alignment", alignment, _SINS_ALIGNMENT), (0, 4), alignment),
        ("body collapse", _choice("collapse", collapse, _SINS_COLLAPSE), (0, 3), collapse),
        ("posterolateral involvement", _choice("posterolateral", posterolateral, _SINS_POSTEROLATERAL), (0, 3),
         posterolateral),
    ]
    lo = hi = 0
    reasons = []
    for name, pts, (a, b), raw in comps:
        if pts is None:
            lo, hi = lo + a, hi + b
            reasons.append(f"{name}: unknown ({a}..{b})")
        else:
            lo, hi = lo + pts, hi + pts
            reasons.append(f"{name}: {raw} -> {pts}")
    if lo == hi:
        band = _band(lo, SINS_BANDS)
        return SINSResult(lo, band, tuple(reasons + [f"total {lo} -> {band}"]), lo, hi)
    lb, hb = _band(lo, SINS_BANDS), _band(hi, SINS_BANDS)
    band = lb if lb == hb else "unknown"
    return SINSResult(None, band, tuple(reasons + [f"total between {lo} and {hi} -> {band}"]), lo, hi)


# ---------------------------------------------------------------------------------------------------- eligibility


def _status(value: bool | None, met: str, unmet: str, unknown: str) -> tuple[str, str]:
    if value is None:
        return "unknown", unknown
    return ("met", met) if value else ("unmet", unmet)


def eligibility(
    *,
    checklist: str = "all",
    pain_weeks: float | None = None,
    vas: float | None = None,
    pain_refractory: bool | None = None,
    mri_oedema: bool | None = None,
    focal_tenderness: bool | None = None,
    height_loss_fraction: float | None = None,
    t_score: float | None = None,
    deformity_progression: bool | None = None,
) -> list[tuple[str, str, str]]:
    """Criteria of the augmentation checklists as ``(criterion, status, reason)``, status met / unmet / unknown.

    ``checklist`` is one of ``nice``, ``vertos``, ``rand``, ``multisociety`` or ``all``.
    """
    key = checklist.strip().lower()
    if key != "all" and key not in CHECKLISTS:
        raise ParameterError(f"Unknown checklist {checklist!r}.", f"use one of {', '.join(CHECKLISTS)} or 'all'.")
    wk = _opt_range("pain_weeks", pain_weeks, 0.0, 520.0, "weeks")
    v = _opt_range("vas", vas, 0.0, 10.0, "(0-10 scale)")
    hl = _opt_range("height_loss_fraction", height_loss_fraction, 0.0, 1.0, "(fraction)")
    t = _opt_range("t_score", t_score, -10.0, 5.0)
    refr = _opt_bool("pain_refractory", pain_refractory)
    oed = _opt_bool("mri_oedema", mri_oedema)
    tender = _opt_bool("focal_tenderness", focal_tenderness)
    prog = _opt_bool("deformity_progression", deformity_progression)

    def ge(x: float | None, thr: float) -> bool | None:
        return None if x is None else x >= thr - _EPS

    def le(x: float | None, thr: float) -> bool | None:
        return None if x is None else x <= thr + _EPS

    vas_txt = f"VAS {v:g}" if v is not None else "VAS unknown"
    out: list[tuple[str, str, str]] = []

    def add(name: str, value: bool | None, met: str, unmet: str, unknown: str) -> None:
        s, r = _status(value, met, unmet, unknown)
        out.append((name, s, r))

    if key in ("all", "nice"):
        add("NICE TA279: severe ongoing pain despite optimal pain management", refr,
            f"pain refractory to optimal management ({vas_txt}; NICE sets no number)",
            "pain not refractory to optimal management", "whether optimal pain management failed is not known")
        add("NICE TA279: recent, unhealed fracture", oed, "oedema on MRI: unhealed",
            "no oedema on MRI: healed", "healing state unknown (CT heights cannot show it; needs MRI STIR)")
        both = None if tender is None or oed is None else (tender and oed)
        if tender is False or oed is False:
            both = False
        add("NICE TA279: pain confirmed at the fracture level (examination and imaging)", both,
            "focal tenderness and imaging agree", "examination or imaging does not place the pain at this level",
            "focal tenderness or MRI finding unknown")
    if key in ("all", "vertos"):
        add("VERTOS II/IV: pain <= 6 weeks", le(wk, 6.0), f"pain for {wk:g} weeks" if wk is not None else "",
            f"pain for {wk:g} weeks > 6" if wk is not None else "", "pain duration unknown")
        add("VERTOS II/IV: VAS >= 5", ge(v, 5.0), vas_txt, vas_txt + " < 5", "VAS unknown")
        add("VERTOS II/IV: focal tenderness at the level", tender, "present", "absent", "not examined / unknown")
        add("VERTOS II/IV: height loss >= 15 %", ge(hl, 0.15), f"height loss {hl:.0%}" if hl is not None else "",
            f"height loss {hl:.0%} < 15 %" if hl is not None else "", "height loss unknown")
        add("VERTOS II/IV: bone oedema on MRI", oed, "present", "absent", "MRI unknown")
        add("VERTOS II/IV: T-score <= -1", le(t, -1.0), f"T-score {t:g}" if t is not None else "",
            f"T-score {t:g} > -1" if t is not None else "", "T-score unknown")
    if key in ("all", "rand"):
        add("RAND/UCLA: VAS >= 5 (pathway entry)", ge(v, 5.0), vas_txt, vas_txt + " < 5", "VAS unknown")
        add("RAND/UCLA: positive advanced imaging (MRI oedema)", oed, "present", "absent", "MRI unknown")
        add("RAND/UCLA: unfavourable condition (one of several, not each required): height loss >= 20 %", ge(hl, 0.20),
            f"height loss {hl:.0%}" if hl is not None else "",
            f"height loss {hl:.0%} < 20 %" if hl is not None else "", "height loss unknown")
        add("RAND/UCLA: unfavourable condition (one of several, not each required): progression of height loss", prog, "progression seen",
            "no progression", "progression unknown (needs follow-up imaging)")
    if key in ("all", "multisociety"):
        add("Multisociety 2014: non-operative therapy failed", refr, "failed", "not failed", "unknown")
    return out


def eligibility_summary(items: list[tuple[str, str, str]]) -> str:
    """``unmet`` if any required criterion is unmet, ``met`` if all are met, else ``unknown``.

    RAND/UCLA "unfavourable conditions" are weighed together by the panel, not each required: they are left out.
    """
    statuses = {s for c, s, _ in items if "not each required" not in c}
    if "unmet" in statuses:
        return "unmet"
    return "met" if statuses == {"met"} else "unknown"


# ------------------------------------------------------------------------------------------ morphometry and report


@dataclass(frozen=True)
class MorphologyInputs:
    """Plain values pulled from a ``LevelMorphometry`` (any missing attribute is ``None``)."""

    level: str | None = None
    evaluable: bool | None = None
    reason: str = ""
    ratio_ha_hp: float | None = None
    ratio_hm_hp: float | None = None
    ratio_hp_above: float | None = None
    ratio_hp_below: float | None = None
    deformity: float | None = None
    genant_grade: int | None = None
    genant_type: str | None = None
    hu_mean: float | None = None
    wedge_angle_deg: float | None = None
    height_anterior_mm: float | None = None
    height_middle_mm: float | None = None
    height_posterior_mm: float | None = None


def _finite_or_none(x: Any) -> Any:
    """NaN (a measurement that could not be made) becomes ``None`` (unknown)."""
    return None if isinstance(x, float) and math.isnan(x) else x


def morphology_from_level(level_morph: Any) -> MorphologyInputs:
    """Pull the values the scores need from a ``LevelMorphometry`` (or any object with those attributes)."""
    vals = {f: _finite_or_none(getattr(level_morph, f, None)) for f in MorphologyInputs.__dataclass_fields__}
    vals["reason"] = vals.get("reason") or ""
    if vals.get("level") is None:
        vals["level"] = getattr(level_morph, "label", None)
    if vals.get("evaluable") is False:
        keep = {"level": vals["level"], "evaluable": False, "reason": vals["reason"]}
        return MorphologyInputs(**keep)
    return MorphologyInputs(**vals)


def morphology_for(spine: Any, level: str) -> MorphologyInputs:
    """The :class:`MorphologyInputs` of one level of a ``SpineMorphometry`` (``.levels`` keyed by level name)."""
    key = str(level).strip().upper().removeprefix("VERTEBRAE_")
    levels = getattr(spine, "levels", {})
    if key not in levels:
        raise LevelNotFoundError(
            f"Level {level!r} is not in the segmentation (levels found: {', '.join(levels) or 'none'}).",
            "choose one of the levels found, or check the label numbering (--numbering v1/v2).",
        )
    return morphology_from_level(levels[key])


@dataclass(frozen=True)
class Assessment:
    level: str | None
    morphology: MorphologyInputs
    genant: GenantResult
    qm: QMResult
    density_class: str | None
    of_class: OFClassification
    of_score: OFScore
    sins: SINSResult
    eligibility: tuple[tuple[str, str, str], ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def assess(
    morphology: MorphologyInputs | None = None,
    *,
    level: str | None = None,
    pain_weeks: float | None = None,
    vas: float | None = None,
    neuro_deficit: bool | None = None,
    pain_refractory: bool | None = None,
    mri_oedema: bool | None = None,
    focal_tenderness: bool | None = None,
    t_score: float | None = None,
    deformity_progression: bool | None = None,
    mobilisation_possible: bool | None = None,
    tension_band_failure: bool | None = None,
    posterior_wall_distinct: bool | None = None,
    of_class: str | None = None,
    asa_gt3: bool | None = None,
    mfi_gt2: bool | None = None,
    anticoagulation: bool | None = None,
    sins_pain: str | None = None,
    sins_lesion: str | None = None,
    sins_alignment: str | None = None,
    sins_posterolateral: str | None = None,
) -> Assessment:
    """Every score for one level from what is known: morphology (optional) and clinical flags."""
    m = morphology or MorphologyInputs(level=level)
    lvl = level or m.level
    notes: list[str] = []
    if m.evaluable is False:
        notes.append(f"morphometry: level not evaluable ({m.reason or 'no reason given'}); image-based inputs unknown")
    g = genant_sq(m.ratio_ha_hp, m.ratio_hm_hp, m.ratio_hp_above, m.ratio_hp_below, level=lvl)
    qm = qm_sixpoint(m.ratio_ha_hp, m.ratio_hm_hp, m.ratio_hp_above, m.ratio_hp_below)
    if m.genant_grade is not None and g.grade is not None and m.genant_grade != g.grade:
        notes.append(f"morphometry module graded {m.genant_grade}, the scores module {g.grade} from the same ratios")
    density = ct_density_class(m.hu_mean)
    if of_class is not None:
        ofc = OFClassification(_normalize_of_class(of_class), (_normalize_of_class(of_class),), ("given as input",))
    else:
        derived, why = of_inputs_from_morphology(g.grade, g.type)
        notes.append(f"OF inputs from morphometry: {why}")
        ofc = of_classification(tension_band_failure=tension_band_failure, posterior_wall_distinct=posterior_wall_distinct,
                                oedema=mri_oedema, **derived)
    # The OF-score needs one class: with several possible, report the card score at the lowest and highest class.
    clinical = {"t_score": t_score, "hu": m.hu_mean, "deformity_progression": deformity_progression, "vas": vas,
                "neuro_deficit": neuro_deficit, "mobilisation_possible": mobilisation_possible, "asa_gt3": asa_gt3,
                "mfi_gt2": mfi_gt2, "anticoagulation": anticoagulation}
    if ofc.of_class is None:
        classes = [c for c in ofc.possible if c != "none"]
        ofs = OFScore(None, "unknown", (f"OF class not decided ({' / '.join(ofc.possible)}): score unknown",))
        if classes:
            lo, hi = of_score(min(classes), **clinical), of_score(max(classes), **clinical)
            b_lo, b_hi = _band(lo.score_min, OF_BANDS), _band(hi.score_max, OF_BANDS)
            why = (f"card score {lo.score} if {min(classes)} ... {hi.score} if {max(classes)}; "
                   f"range with all unknowns {lo.score_min}..{hi.score_max}")
            ofs = OFScore(None, b_lo if b_lo == b_hi else "indeterminate", (*ofs.reasons, why),
                          lo.score_min, hi.score_max, None)
    else:
        ofs = of_score(ofc.of_class, **clinical)
    collapse, why = sins_collapse_from_deformity(g.deformity)
    notes.append(f"SINS collapse from morphometry: {why}; SINS is defined for neoplastic spine disease")
    s = sins(level=lvl, pain=sins_pain, lesion=sins_lesion, alignment=sins_alignment, collapse=collapse,
             posterolateral=sins_posterolateral)
    elig = eligibility(pain_weeks=pain_weeks, vas=vas, pain_refractory=pain_refractory, mri_oedema=mri_oedema,
                       focal_tenderness=focal_tenderness, height_loss_fraction=g.deformity, t_score=t_score,
                       deformity_progression=deformity_progression)
    return Assessment(lvl, m, g, qm, density, ofc, ofs, s, tuple(elig), tuple(notes))


def print_assessment(a: Assessment, console: Any) -> None:
    """Render an :class:`Assessment` as rich tables on ``console``."""
    from rich.table import Table

    m = a.morphology
    t = Table(title=f"Scores for {a.level or 'unknown level'}", show_lines=False)
    t.add_column("score")
    t.add_column("result")
    t.add_column("reasons")

    def fmt(x: Any, spec: str = ".2f") -> str:
        return "unknown" if x is None else format(x, spec)

    t.add_row("heights Ha/Hm/Hp (mm)",
              f"{fmt(m.height_anterior_mm, '.1f')} / {fmt(m.height_middle_mm, '.1f')} / {fmt(m.height_posterior_mm, '.1f')}",
              f"ratios Ha/Hp {fmt(m.ratio_ha_hp)}, Hm/Hp {fmt(m.ratio_hm_hp)}, Hp/above {fmt(m.ratio_hp_above)}, "
              f"Hp/below {fmt(m.ratio_hp_below)}")
    t.add_row("Genant SQ", f"grade {fmt(a.genant.grade, 'd')} ({a.genant.type or 'unknown'})", "; ".join(a.genant.reasons))
    t.add_row("QM 6-point (20 %)", a.qm.status, "; ".join(a.qm.reasons))
    t.add_row("CT density (Pickhardt)", a.density_class or "unknown", f"mean HU {fmt(m.hu_mean, '.0f')}")
    t.add_row("AO OF class", a.of_class.of_class or " / ".join(a.of_class.possible), "; ".join(a.of_class.reasons))
    t.add_row("OF-score", f"score {fmt(a.of_score.score, 'd')}; band {a.of_score.band}", "; ".join(a.of_score.reasons))
    t.add_row("SINS", f"score {fmt(a.sins.score, 'd')}; band {a.sins.band}", "; ".join(a.sins.reasons))
    console.print(t)
    e = Table(title="Eligibility for vertebral augmentation (checklists)")
    e.add_column("criterion")
    e.add_column("status")
    e.add_column("reason")
    colour = {"met": "green", "unmet": "red", "unknown": "yellow"}
    for crit, status, reason in a.eligibility:
        e.add_row(crit, f"[{colour[status]}]{status}[/]", reason)
    console.print(e)
    for n in a.notes:
        console.print(f"note: {n}")
