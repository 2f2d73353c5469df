"""The comparison of vertebroplasty and kyphoplasty on one level, and its outputs.

``Comparison`` holds the pre-treatment model, the morphometry of the scan, the two procedure outcomes (when simulated),
the metrics side by side with their difference and which procedure each favours, the evidence rows and the claims check.
``write_outputs`` writes ``report.html`` (self-contained), ``comparison.json`` (schema: docs/comparison_schema.md) and
NIfTI overlays on the CT's grid for 3D Slicer.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from .. import DISCLAIMER, __version__
from ..anatomy.io import Volume
from ..anatomy.morphometry import SpineMorphometry
from ..clinical import evidence as ev
from ..constants import BODY_TEMPERATURE_C
from ..model.labels import TRABECULAR
from ..model.vertebra import Vertebra, label_counts
from .claims import Claim, check_claims

__all__ = ["MetricSpec", "MetricRow", "Comparison", "METRICS", "metric_rows", "compare", "write_outputs",
           "resample_to_ct", "deposit_to_ct", "necrosis_fraction"]


@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    unit: str
    better: str | None  # "lower", "higher" or None (no preference)
    evidence_metric: str | None = None
    fmt: str = "{:.2f}"


#: The summary metrics of docs/comparison_schema.md shown side by side (keys as in Outcome.metrics).
METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("injected_ml", "cement injected", "mL", None, None, "{:.2f}"),
    MetricSpec("leaked_ml", "cement leaked (all routes)", "mL", "lower", "leakage", "{:.3f}"),
    MetricSpec("leaked_ml_B", "  leaked: basivertebral vein (B)", "mL", "lower", None, "{:.3f}"),
    MetricSpec("leaked_ml_S", "  leaked: segmental vein (S)", "mL", "lower", None, "{:.3f}"),
    MetricSpec("leaked_ml_C", "  leaked: cortical defect (C)", "mL", "lower", None, "{:.3f}"),
    MetricSpec("leaked_ml_D", "  leaked: disc (D)", "mL", "lower", None, "{:.3f}"),
    MetricSpec("leak_fraction", "leak fraction", "-", "lower", "leakage", "{:.3f}"),
    MetricSpec("fill_fraction_of_body", "fill of the body", "-", None, None, "{:.3f}"),
    MetricSpec("max_injection_pressure_pa", "max plunger pressure", "MPa", "lower", None, "{:.2f}"),
    MetricSpec("max_injection_pressure_bone_pa", "max bone pressure at the tip", "MPa", "lower", None, "{:.3f}"),
    MetricSpec("height_restored_mm", "height restored", "mm", "higher", "height", "{:.1f}"),
    MetricSpec("height_anterior_mm", "anterior height after", "mm", "higher", "height", "{:.1f}"),
    MetricSpec("wedge_angle_deg", "wedge angle after", "deg", "lower", "kyphotic_angle", "{:.1f}"),
    MetricSpec("peak_temperature_c", "peak temperature (cement core)", "C", "lower", None, "{:.1f}"),
    MetricSpec("peak_temperature_canal_c", "peak temperature at the canal wall", "C", "lower", None, "{:.1f}"),
    MetricSpec("time_above_50c_canal_s", "time above 50 C at the canal wall", "s", "lower", None, "{:.0f}"),
    MetricSpec("necrosis_volume_ml", "thermal necrosis (Omega >= 1)", "mL", "lower", None, "{:.2f}"),
    MetricSpec("stiffness_n_per_mm", "stiffness after", "N/mm", "higher", None, "{:.0f}"),
    MetricSpec("strength_n", "strength after", "N", "higher", None, "{:.0f}"),
    MetricSpec("procedure_time_min", "procedure time (evidence)", "min", "lower", "procedure_time", "{:.1f}"),
    MetricSpec("cost_usd", "index cost, outpatient (evidence)", "USD", "lower", "cost", "{:,.0f}"),
    MetricSpec("set_time_min", "cement set time at 37 C", "min", None, None, "{:.1f}"),
    MetricSpec("peak_time_after_mixing_min", "cement peak time after mixing", "min", None, None, "{:.1f}"),
)

_PA_TO_MPA = {"max_injection_pressure_pa", "max_injection_pressure_bone_pa"}


@dataclass(frozen=True)
class MetricRow:
    key: str
    label: str
    unit: str
    vp: float | None
    kp: float | None
    difference: float | None
    favoured: str  # "VP", "KP", "equal" (the difference is within its range), "-"
    evidence: str
    #: numerical half-widths (report.uncertainty) of VP, KP and the difference (None: not simulated / not measured)
    vp_u: float | None = None
    kp_u: float | None = None
    diff_u: float | None = None
    #: under this value the quantity is below the model's resolution and shows as "none" (None: no limit)
    limit: float | None = None
    reason: str = ""  # why the row shows no difference, from the physics
    trust: tuple = ()  # report.uncertainty.Trust of the validation cases that test the row's model
    #: parameter samples (report.sampling): (5 %, median, 95 %) of VP, KP and KP - VP; None when not sampled
    vp_q: tuple | None = None
    kp_q: tuple | None = None
    diff_q: tuple | None = None

    @property
    def difference_range(self) -> tuple[float, float] | None:
        """The range of KP - VP that decides "favoured": the sampled 5-95 % (with the difference itself) widened by
        the numerical half-width; without samples, difference +/- the numerical half-width."""
        if self.difference is None:
            return None
        du = self.diff_u or 0.0
        if self.diff_q is not None:
            return (min(self.diff_q[0], self.difference) - du, max(self.diff_q[2], self.difference) + du)
        if self.diff_u is None:
            return None
        return (self.difference - du, self.difference + du)

    def sampled_text(self, which: str) -> str:
        """"5-95 %: a to b" of VP, KP or the difference ("diff") in the row's display unit ("" when not sampled or
        when the range rounds to the value shown)."""
        q = {"vp": self.vp_q, "kp": self.kp_q, "diff": self.diff_q}[which]
        if q is None:
            return ""
        lo, hi = (_fmt(x, self.key, signed=which == "diff", limit=None if which == "diff" else self.limit)
                  for x in (q[0], q[2]))
        shown = {"vp": self.vp_text, "kp": self.kp_text, "diff": self.diff_text}[which]
        if lo == hi == shown or (lo == hi and which == "diff" and lo in ("0", shown)):
            return ""
        return f"{lo} to {hi}"

    @property
    def vp_text(self) -> str:
        return _fmt(self.vp, self.key, limit=self.limit)

    @property
    def kp_text(self) -> str:
        return _fmt(self.kp, self.key, limit=self.limit)

    @property
    def diff_text(self) -> str:
        if self.limit is not None and all(v is not None and abs(v) < self.limit for v in (self.vp, self.kp)):
            return "0"
        return _fmt(self.difference, self.key, signed=True)

    def range_text(self, which: str) -> str:
        """"+/- u" of VP, KP or the difference ("diff"), in the row's display unit ("" when there is none)."""
        u = {"vp": self.vp_u, "kp": self.kp_u, "diff": self.diff_u}[which]
        if u is None or u == 0 or (which != "diff" and getattr(self, f"{which}_text") == "none"):
            return ""
        u = u / 1e6 if self.key in _PA_TO_MPA else u
        if u < 0.5 * 10.0 ** -_decimals(_spec(self.key).fmt):  # under the last digit shown: no range to show
            return ""
        text = f"{u:.2g}" if u < 100 else f"{u:,.0f}"
        return "\u00b1" + (f"{float(text):g}" if "e" in text else text)


def _spec(key: str) -> MetricSpec:
    return next(s for s in METRICS if s.key == key)


def _fmt(v, key, signed=False, limit: float | None = None) -> str:
    """A value in the row's display unit and format: "none" under the detection limit, never "-0.000"."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if limit is not None and abs(v) < limit:
        return "none"
    s = _spec(key)
    if key in _PA_TO_MPA:
        v = v / 1e6
    text = s.fmt.format(v)
    if float(text.replace(",", "")) == 0.0:  # rounds to zero: "0" (or "< 0.001") and never "-0.000"
        return "0" if v == 0 else "< " + s.fmt.format(10.0 ** -_decimals(s.fmt)).lstrip("+")
    return ("+" + text) if signed and v > 0 else text


def _decimals(fmt: str) -> int:
    m = re.search(r"\.(\d+)[fe]", fmt)
    return int(m.group(1)) if m else 0


def _evidence_summary(metric: str | None) -> str:
    if metric is None:
        return ""
    p = ev.pooled(metric)
    if p is None:
        return ""
    parts = []
    if p.vp_range and p.kp_range:
        parts.append(f"VP {_span(p.vp_range)} vs KP {_span(p.kp_range)} {p.unit}")
    for cite, measure, eff, lo, hi in p.effects[:1]:
        ci = f" ({lo:g} to {hi:g})" if lo is not None and hi is not None else ""
        parts.append(f"{measure} {eff:g}{ci}, {cite}")
    return f"{p.direction}: " + "; ".join(parts) + f" [{len(p.rows)} rows]"


def _span(r) -> str:
    """"1.7" for a range of one value, "1.2-1.7" otherwise."""
    return f"{r[0]:g}" if r[0] == r[1] else f"{r[0]:g}-{r[1]:g}"


def _favour(s: MetricSpec, a: float, b: float, diff: float, rng: tuple[float, float] | None, rel_equal: float) -> str:
    """"VP"/"KP" only when the range ``rng`` of KP - VP excludes zero (or, without one, when |KP - VP| exceeds
    ``rel_equal`` of the larger value)."""
    scale = max(abs(a), abs(b), 1e-12)
    if rng is None:
        rng = (diff - rel_equal * scale, diff + rel_equal * scale)
    tiny = 1e-12 * scale
    if rng[0] <= tiny and rng[1] >= -tiny:
        return "equal"
    return "KP" if (diff < 0) == (s.better == "lower") else "VP"


def metric_rows(vp: dict, kp: dict, rel_equal: float = 0.02, ctx: dict | None = None,
                ranges=None) -> list[MetricRow]:
    """Side-by-side rows for every metric either outcome has; ``favoured`` by the metric's direction when the range
    of the difference excludes zero (``ctx``: report.uncertainty's context for the numerical ranges; ``ranges``: a
    report.sampling.ParameterRanges for the parameter ranges; without either, ``rel_equal``)."""
    from . import uncertainty as unc

    rows = []
    for s in METRICS:
        a, b = vp.get(s.key), kp.get(s.key)
        a = None if a is None or not math.isfinite(a) else a
        b = None if b is None or not math.isfinite(b) else b
        if a is None and b is None:
            continue
        ua = ub = du = limit = None
        reason, trust = "", ()
        if ctx is not None:
            ua = unc.half_widths(s.key, a, {**ctx, "omega": ctx.get("omega_VP")})
            ub = unc.half_widths(s.key, b, {**ctx, "omega": ctx.get("omega_KP")})
            du = ua + ub if ua is not None and ub is not None else None
            limit = unc.detection_limit(s.key, ctx["voxel_ml"], ctx.get("injected_ml"))
            reason = unc.row_reason(s.key, a, b, {**ctx, "u_sum": du or 0.0})
            trust = tuple(unc.trust_marks(s.key))
        if limit is not None:  # values under the model's resolution are none: no difference to favour
            a = 0.0 if a is not None and abs(a) < limit else a
            b = 0.0 if b is not None and abs(b) < limit else b
        diff = (b - a) if a is not None and b is not None else None
        q = ranges.quantiles(s.key, a, b, limit) if ranges is not None else None
        q = q or {}
        row = MetricRow(s.key, s.label, "MPa" if s.key in _PA_TO_MPA else s.unit, a, b, diff, "-",
                        _evidence_summary(s.evidence_metric), ua, ub, du, limit, reason, trust, q.get("vp"),
                        q.get("kp"), q.get("diff"))
        if diff is not None and s.better is not None:
            row = replace(row, favoured=_favour(s, a, b, diff, row.difference_range, rel_equal))
        rows.append(row)
    return rows


def evidence_procedure_metrics() -> tuple[dict, dict]:
    """Procedure time and index cost from the evidence table (KAVIAR; AJNR 2011), as VP and KP metrics."""
    t = next(r for r in ev.rows_for("procedure_time") if r.vp_value is not None)
    c = next(r for r in ev.rows_for("cost") if r.id == "ajnr2011_cost_outpatient")
    return ({"procedure_time_min": t.vp_value, "cost_usd": c.vp_value},
            {"procedure_time_min": t.kp_value, "cost_usd": c.kp_value})


@dataclass(frozen=True, eq=False)
class Comparison:
    level: str
    vertebra: Vertebra
    spine: SpineMorphometry
    vp: object | None = None  # procedures' Outcome
    kp: object | None = None
    rows: tuple[MetricRow, ...] = ()
    claims: tuple[Claim, ...] = ()
    inputs: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)  # mechanics: state -> {stiffness_n_per_mm, strength_n}
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # per procedure: metrics of later stages (exotherm, mechanics)
    study: object | None = None  # the vertaug.study.Study compared (None for a comparison built by hand)
    ranges: object | None = None  # report.sampling.ParameterRanges (None: no parameter samples)


def _outcome_metrics(outcome) -> dict:
    if outcome is None:
        return {}
    m = dict(getattr(outcome, "metrics", {}) or {})
    by_route = m.pop("leaked_ml_by_route", None)
    if isinstance(by_route, dict):
        for route, v in by_route.items():
            m[f"leaked_ml_{route}"] = v
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}


def _stage_metrics(run, states: dict) -> dict[str, float]:
    """Metrics of the later stages of one procedure run: its exotherm, and its FE state when reported."""
    m = run.exotherm.metrics.to_dict() if run.exotherm is not None else {}
    st = states.get(run.name)
    if st is not None:
        m.update({"stiffness_n_per_mm": float(st.stiffness_n_per_mm), "strength_n": float(st.strength_n)})
    return m


def _uncertainty_context(study, spine: SpineMorphometry, vp_m: dict, kp_m: dict, inputs: dict) -> dict:
    """What report.uncertainty needs to size the ranges and give the reasons of one study's rows."""
    v = study.pre
    m = spine.levels.get(v.level) if hasattr(spine, "levels") else None
    ctx = {"voxel_ml": float(v.voxel_volume_m3) * 1e6, "spacing_mm": float(v.spacing_m[0]) * 1e3,
           "ap_depth_mm": getattr(m, "ap_depth_mm", None) if m is not None and m.evaluable else None,
           "injected_ml": vp_m.get("injected_ml"), "kp_injected_ml": kp_m.get("injected_ml"),
           "fracture": "fracture" in inputs,
           "kp_lift_mm": kp_m.get("endplate_lift_max_mm"),
           "stop_reason": {name: run.outcome.injection.stop_reason for name, run in study.runs.items()},
           "vp_canal_c": vp_m.get("peak_temperature_canal_c"), "kp_canal_c": kp_m.get("peak_temperature_canal_c")}
    for name, run in study.runs.items():
        if run.exotherm is not None:
            ctx[f"omega_{name}"] = run.exotherm.omega
    return ctx


def procedure_metrics(run, states: dict | None = None) -> dict:
    """Metrics of one procedure run as the rows use them: the outcome's, its exotherm's and its FE state's
    (``states``: the FE states reported, by name; default: the run's own)."""
    if states is None:
        states = {run.name: run.mechanics} if run.mechanics is not None else {}
    m = _outcome_metrics(run.outcome)
    m.update({k: float(v) for k, v in _stage_metrics(run, states).items()})
    return m


def study_metrics(study, states: dict) -> tuple[dict, dict]:
    """(VP, KP) metrics of a study's runs (:func:`procedure_metrics`) with the FE states reported."""
    return procedure_metrics(study.vp, states), procedure_metrics(study.kp, states)


def compare(study, spine: SpineMorphometry, inputs: dict | None = None, timings_s: dict | None = None,
            states: dict | None = None, notes=(), ranges=None) -> Comparison:
    """Assemble the comparison of a :class:`vertaug.study.Study` with the scan's morphometry.

    ``states``: the FE states to report ({"pre-treatment": MechanicsState, "VP": ..., "KP": ...}); their stiffness and
    strength join the procedures' rows. Exotherm metrics join them from the study's runs. ``ranges``: the
    parameter samples (report.sampling.ParameterRanges) giving each row its 5-95 % range.
    """
    states = dict(states or {})
    vp, kp = study.vp.outcome, study.kp.outcome
    extra = {name: _stage_metrics(run, states) for name, run in study.runs.items()}
    vp_m, kp_m = study_metrics(study, states)
    ev_vp, ev_kp = evidence_procedure_metrics()
    vp_m, kp_m = {**ev_vp, **vp_m}, {**ev_kp, **kp_m}
    rows = tuple(metric_rows(vp_m, kp_m, ctx=_uncertainty_context(study, spine, vp_m, kp_m, inputs or {}),
                             ranges=ranges))
    sim = {}  # from the rows: values under their detection limit are 0 there
    for r in rows:
        if r.key in ("leaked_ml", "height_restored_mm", "injected_ml"):
            sim.update({f"{tag}_{r.key}": v for tag, v in (("vp", r.vp), ("kp", r.kp)) if v is not None})
    vertebra = study.pre
    claims = tuple(check_claims(spine[vertebra.level].density_class, sim))
    return Comparison(vertebra.level, vertebra, spine, vp, kp, rows, claims, dict(inputs or {}), dict(timings_s or {}),
                      {k: v.to_dict() for k, v in states.items()}, tuple(study.notes) + tuple(notes), extra,
                      study=study, ranges=ranges)


# ------------------------------------------------------------------------------------------------------- outputs


def resample_to_ct(field_model: np.ndarray, model_affine_mm: np.ndarray, ct: Volume, order: int = 0) -> np.ndarray:
    """Put a model-grid field onto the CT's grid (zero outside the model), for NIfTI overlays over the original CT."""
    out = np.zeros(ct.shape, dtype=np.float32)
    corners = np.array([[i, j, k] for i in (0, field_model.shape[0] - 1) for j in (0, field_model.shape[1] - 1)
                        for k in (0, field_model.shape[2] - 1)], float)
    world = corners @ model_affine_mm[:3, :3].T + model_affine_mm[:3, 3]
    ct_inv = np.linalg.inv(ct.affine_mm)
    ijk = world @ ct_inv[:3, :3].T + ct_inv[:3, 3]
    lo = np.maximum(np.floor(ijk.min(axis=0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, ct.shape)
    if np.any(hi <= lo):
        return out
    grid = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij")
    pts = np.stack([g.ravel() for g in grid], axis=1).astype(float)
    w = pts @ ct.affine_mm[:3, :3].T + ct.affine_mm[:3, 3]
    m_inv = np.linalg.inv(model_affine_mm)
    mi = w @ m_inv[:3, :3].T + m_inv[:3, 3]
    vals = ndimage.map_coordinates(field_model.astype(np.float32), mi.T, order=order, mode="constant", cval=0.0)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = vals.reshape(grid[0].shape)
    return out


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _clean(obj.item())
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _metric_dict(r: MetricRow) -> dict:
    """One row of comparison.json, in the row's display unit (MPa for pressures)."""
    k = 1e-6 if r.unit == "MPa" else 1.0

    def sc(x):
        return None if x is None else x * k

    rng = r.difference_range
    rng = None if rng is None else [sc(rng[0]), sc(rng[1])]

    def q(t):
        return None if t is None else [sc(x) for x in t]

    return {"key": r.key, "label": r.label.strip(), "unit": r.unit, "vp": sc(r.vp), "kp": sc(r.kp),
            "kp_minus_vp": sc(r.difference), "vp_halfwidth": sc(r.vp_u), "kp_halfwidth": sc(r.kp_u),
            "vp_p5_p50_p95": q(r.vp_q), "kp_p5_p50_p95": q(r.kp_q), "kp_minus_vp_p5_p50_p95": q(r.diff_q),
            "kp_minus_vp_range": rng, "detection_limit": sc(r.limit), "favoured": r.favoured,
            "reason": r.reason, "evidence": r.evidence,
            "validation": [{"case": t.case, "quantity": t.quantity, "within": t.within,
                            "rel_error_pct": t.rel_error_pct} for t in r.trust]}


def comparison_dict(c: Comparison) -> dict:
    from .morpho_table import morphometry_dict

    v = c.vertebra
    return _clean({
        "schema": "vertaug.comparison/1",
        "vertaug_version": __version__,
        "disclaimer": DISCLAIMER,
        "level": c.level,
        "inputs": c.inputs,
        "morphometry": morphometry_dict(c.spine),
        "model": {
            "spacing_mm": [s * 1e3 for s in v.spacing_m],
            "shape": list(v.shape),
            "label_counts": label_counts(v),
            "body_volume_ml": v.body_volume_ml,
            "notes": list(v.notes),
        },
        "metrics": [_metric_dict(r) for r in c.rows],
        "claims": [{"number": k.number, "claim": k.text, "status": k.status, "finding": k.finding,
                    "evidence_ids": list(k.evidence_ids), "simulated": k.simulated} for k in c.claims],
        "mechanics_states": c.states,
        "stage_metrics": c.extra,
        "outcomes": {name: o.summary() for name, o in (("VP", c.vp), ("KP", c.kp)) if o is not None and
                     hasattr(o, "summary")},
        "notes": list(c.notes),
        "parameter_ranges": c.ranges.to_dict() if c.ranges is not None else None,
        "evidence_ids": [r.id for r in ev.load_evidence()],
        "timings_s": c.timings_s,
    })


def _kp_pressure_words(c: Comparison) -> str:
    """How KP's filling pressure compares with VP's in this simulation, written from the table's numbers."""
    r = {x.key: x for x in c.rows}.get("max_injection_pressure_pa")
    if r is None or r.vp is None or r.kp is None or r.vp <= 0:
        return "."
    if r.favoured == "equal":
        return " at about the same pressure as vertebroplasty's cement in this simulation."
    ratio = r.kp / r.vp
    if ratio > 1:
        return (f": in this simulation the thicker cement needed a {ratio:.0f} times higher plunger pressure "
                f"({r.kp / 1e6:.2f} vs {r.vp / 1e6:.2f} MPa), although it flows into an open cavity.")
    return (f": in this simulation at a lower plunger pressure than vertebroplasty's ({r.kp / 1e6:.2f} vs "
            f"{r.vp / 1e6:.2f} MPa).")


def fracture_lead(c: Comparison) -> str:
    """The report's first line when the level was fractured virtually (inputs["fracture"]), else ""."""
    fr = c.inputs.get("fracture")
    if not fr:
        return ""
    if not isinstance(fr, dict):
        return f"This is a simulated fracture of a real vertebra: {c.level} of this CT, fractured virtually ({fr})."
    what = f"{fr.get('type', 'compression')} fracture, Genant grade {fr.get('grade', '?')}"
    if fr.get("deformity_measured") is not None:
        what += (f" (height loss {100 * float(fr['deformity_measured']):.0f} % measured"
                 + (f", {100 * float(fr['deformity_target']):.0f} % asked" if fr.get("deformity_target") is not None
                    else "") + ")")
    extras = [name for key, name in (("cleft", "a gas cleft"), ("endplate_break", "a broken endplate"),
                                     ("cortical_break", "a cortical break")) if fr.get(key)]
    if extras:
        what += " with " + " and ".join(extras)
    before = c.inputs.get("morphometry_before")
    after = c.spine.levels.get(c.level) if hasattr(c.spine, "levels") else None
    hb = ""
    if isinstance(before, dict) and after is not None and getattr(after, "evaluable", False):
        hb = (f" Before: Ha {before.get('height_anterior_mm', float('nan')):.1f} / Hp "
              f"{before.get('height_posterior_mm', float('nan')):.1f} mm; after the virtual fracture: Ha "
              f"{after.height_anterior_mm:.1f} / Hp {after.height_posterior_mm:.1f} mm.")
    return (f"This is a simulated fracture of a real vertebra: {c.level} of this CT was intact and was given a "
            f"virtual {what} before the procedures were simulated.{hb} The morphometry below is that of the virtually "
            "fractured level; the published evidence is about real fractures.")


def _plain_language(c: Comparison) -> list[tuple[str, str]]:
    m = c.spine[c.level]
    grade_words = {0: "no measurable collapse", 1: "a mild collapse (20-25 % height loss)",
                   2: "a moderate collapse (25-40 %)", 3: "a severe collapse (over 40 %)"}
    qa = [
        ("What does the scan show?",
         f"{c.level} is {m.height_anterior_mm:.0f} mm tall at the front and {m.height_posterior_mm:.0f} mm at the back: "
         f"{grade_words.get(m.genant_grade, 'not gradable')}. Its bone density on CT is in the {m.density_class} range."),
        ("What would vertebroplasty do?",
         "A needle is passed through the pedicle into the body and liquid bone cement is pushed into the spongy bone, "
         "where it sets in about 10-15 minutes. It does not lift a collapsed vertebra much."),
        ("What would kyphoplasty do?",
         "A small balloon is first inflated inside the body: it packs the spongy bone aside, makes a cavity and may lift "
         "the collapsed top plate. The balloon is then deflated and removed, and thicker cement fills the cavity"
         + _kp_pressure_words(c) + " It takes longer and costs more."),
        ("How do they differ?",
         "In published studies, kyphoplasty leaks cement less often and gives back a few degrees of angle and a few "
         "millimetres of height; pain relief is about the same with both."),
        ("Do they help the pain?",
         "Pain gets better after either, but in trials where some patients had a fake (sham) procedure, vertebroplasty "
         "did little better than the sham overall; one trial in very painful fractures under six weeks old was positive."),
    ]
    if c.rows:
        rows = {r.key: r for r in c.rows}
        leak, inj = rows.get("leaked_ml"), rows.get("injected_ml")
        if leak is not None and leak.vp is not None and leak.kp is not None:
            words = {t: ("no measurable cement (less than one model voxel)" if txt == "none" else f"{txt} mL of cement")
                     for t, txt in (("vp", leak.vp_text), ("kp", leak.kp_text))}
            got = ""
            if inj is not None and inj.vp is not None and inj.kp is not None:
                got = (f"{inj.vp_text} mL of cement went in with vertebroplasty and {inj.kp_text} mL with "
                       "kyphoplasty" + _stop_words(c) + ". ")
            qa.append(("What did the simulation of this vertebra show?",
                       f"With the settings used, {got}{words['vp']} left the vertebra in vertebroplasty and "
                       f"{words['kp']} in kyphoplasty. These are model estimates, not predictions for this patient."))
    return qa


def _stop_words(c: Comparison) -> str:
    """", stopped early because ..." for the procedures whose injection a clinical rule ended before the plan."""
    stops = [(name, o.injection.stop_reason) for name, o in (("vertebroplasty", c.vp), ("kyphoplasty", c.kp))
             if o is not None and getattr(o.injection, "stop_reason", "volume reached") not in ("volume reached", "")]
    if not stops:
        return ""
    why = {r.split(" (")[0] for _, r in stops}
    return (f" ({' and '.join(n for n, _ in stops)} stopped before the planned volume, as a doctor would: "
            f"{'; '.join(sorted(why))})")


LIMITATIONS = (
    "Geometry: the model is built from the CT and its segmentation resampled to the model spacing; on a coarse (3 mm) "
    "scan the cortex, pedicles and canal are approximations, and exits (basivertebral foramen, segmental veins) are "
    "placed by rule, not seen.",
    "Fracture clefts are found only as gas (< -200 HU); cortical defects are an input. Leakage depends on them: "
    "without a defect, little or no cement leaves a modelled body.",
    "Injection: two-phase Darcy flow without capillarity; cement is always more viscous than marrow here, so viscous "
    "fingering (a mechanism of low-viscosity leakage) cannot occur; permeability comes from density by Kozeny-Carman.",
    "Reduction (both procedures): the depressed superior endplate with its compacted band is a rigid plate under a "
    "100 N preload; vertebroplasty lifts it only by elastic unloading prone and by the cement's pore pressure under it, "
    "which rarely reach one voxel (Belkoff 2001 measured 30 % in cadavers; the opening of the fracture line by the "
    "cement and the postural reduction of a mobile, cleft fracture are not modelled).",
    "Kyphoplasty: each balloon crushes bone within its device's rated shape and lifts the plate while that is cheaper; "
    "the lift stops where the plate leaves the rated shape; only the superior endplate is lifted; the posterior wall "
    "and the bending of the membrane around the fragment are not modelled.",
    "Cement: the high-viscosity preset is Palacos R, its cure fitted to published rheometer curing times (Nicholas "
    "2007); the low-viscosity preset is generic (no rheometry of a named low-viscosity cement was found), with Li 2003 "
    "kinetics, slow at room temperature compared with commercial cements; its viscosity hardly rises before setting "
    "and neither preset has a yield stress; the porcine thermal validation runs hotter than measured (see "
    "docs/validation.md).",
    "Mechanics: linear elastic voxel FE of the body between PMMA end caps; cement by a Voigt mix; strength from a "
    "tissue-strain criterion (Pistoia) that counts bone voxels only.",
    "Clinical evidence is group-level; it says what happened on average in studies, not what will happen to this "
    "patient.",
)


def write_outputs(c: Comparison, out_dir: str | Path, ct: Volume | None = None, seg: Volume | None = None,
                  figures: dict | None = None, exotherms: dict | None = None,
                  strain_fields: dict | None = None) -> dict[str, Path]:
    """Write report.html, comparison.json and NIfTI overlays (when ``ct`` is given and the outcomes have fields).

    ``strain_fields``: {state: effective strain at the failure load (%) on the model grid} (FE), written as
    ``strain_at_failure_pct_<state>.nii.gz``."""
    from .html import evidence_groups, inline_png, render_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    view3d_json = _view3d_json(c)  # first: its time joins timings_s in comparison.json
    data = comparison_dict(c)
    written["json"] = out / "comparison.json"
    written["json"].write_text(json.dumps(data, indent=2))
    if ct is not None:
        if exotherms is None and c.study is not None:
            exotherms = {n: r.exotherm for n, r in c.study.runs.items() if r.exotherm is not None}
        written.update(_write_overlays(c, ct, out, exotherms or {}, strain_fields or {}))
    figs = {k: [{"src": inline_png(p), "caption": cap} for p, cap in v] for k, v in (figures or {}).items()}
    for key in ("patient", "vp", "kp", "both"):
        figs.setdefault(key, [])
    spine_rows = list(c.spine.levels.values())
    v = c.vertebra
    counts = label_counts(v)
    model_table = {
        "spacing mm": f"{v.spacing_m[0] * 1e3:g}",
        "grid": "x".join(str(s) for s in v.shape),
        "body mL": f"{v.body_volume_ml:.1f}",
        "trabecular voxels": counts["trabecular"],
        "median k (m^2)": f"{np.median(v.k[v.labels == TRABECULAR]):.2e}" if counts["trabecular"] else "-",
        "median E (MPa)": f"{np.median(v.E[v.labels == TRABECULAR]) / 1e6:.0f}" if counts["trabecular"] else "-",
    }
    context = {
        "level": c.level,
        "version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M"),
        "disclaimer": DISCLAIMER,
        "inputs": {k: _fmt_input(vv) for k, vv in c.inputs.items()},
        "morph_rows": spine_rows,
        "model_table": model_table,
        "figures": figs,
        "metrics": list(c.rows),
        "evidence_groups": evidence_groups(),
        "claims": list(c.claims),
        "plain": _plain_language(c),
        "fracture_lead": fracture_lead(c),
        "view3d_json": view3d_json,
        "plotly_js": _plotly_js() if view3d_json else "",
        "voxel_ml": f"{v.voxel_volume_m3 * 1e6:.3g}",
        "range_note": _range_note(c),
        "view3d_legend": _view3d_legend(c),
        "limitations": LIMITATIONS,
        "methods": [
            "Morphometry: docs/anatomy.md; voxel model and material laws: docs/materials.md, docs/file_formats.md.",
            *[f"Model note: {n}" for n in v.notes],
            *[f"{o.procedure}: {n}" for o in (c.vp, c.kp) if o is not None for n in getattr(o, "notes", ())],
            *c.notes,
            "Run time per stage (s): " + ", ".join(f"{k} {t:.1f}" for k, t in c.timings_s.items()),
            "Evidence: src/vertaug/clinical/evidence.csv (one row per outcome per study, verified flags).",
            "SI units inside the models; clinical units here, with the unit in every column.",
        ],
    }
    written["html"] = render_report(context, out / "report.html")
    return written


def _range_note(c: Comparison) -> str:
    """What the blue "a to b" under a number is, or that there is none (the parameters were not sampled)."""
    r = c.ranges
    if r is None:
        return ("Uncertain material, cement and calibration parameters were not sampled (--samples 0), so real "
                "differences may be larger or smaller than the ranges shown.")
    how = (f", computed on a {r.spacing_mm:g} mm model and carried over by ratio to its nominal run"
           if r.transferred else "")
    return (f'"a to b" (blue, under a number) = 5-95 % range over {r.n_samples} samples of the uncertain trabecular '
            f"permeability, cement start time and CT calibration{how} (docs/report.md); with few samples it is close "
            "to their smallest and largest value. ")


def _view3d_legend(c: Comparison) -> str:
    """The 3-D view's colours, for the parts drawn, and where a leak is not drawn (it left the model)."""
    from .figures import DISPLAY_MIN_FRACTION

    parts = ["body translucent", "cement orange"]
    drawn_leak = False
    for o in (c.vp, c.kp):
        if o is None:
            continue
        if o.fields.get("balloon_cavity") is not None and "balloon cavity cyan" not in parts:
            parts.append("balloon cavity cyan")
        f = np.asarray(o.cement_fraction) >= DISPLAY_MIN_FRACTION
        drawn_leak |= bool((f & ~np.asarray(o.model_after.body_mask)).any())
    if drawn_leak:
        parts.append("cement outside the body (leak) green")
    text = ", ".join(parts).capitalize() + "."
    left = [o.procedure for o in (c.vp, c.kp) if o is not None and o.injection.leaked_ml > 0]
    if left:
        text += (f" Cement that left the model through a vein, the disc or a cortical break ({', '.join(left)}: "
                 "see the leakage row) is counted where it exits and not drawn.")
    return text


def _plotly_js() -> str:
    from .view3d import plotly_js

    return plotly_js()


def _view3d_json(c: Comparison) -> str | None:
    """The interactive 3-D view's plotly figure as JSON (report.view3d), timed into ``c.timings_s['view3d']``."""
    from .figures import DISPLAY_MIN_FRACTION
    from .view3d import figure_json

    outcomes = {name: o for name, o in (("VP", c.vp), ("KP", c.kp)) if o is not None}
    if not outcomes:
        return None
    t0 = time.perf_counter()
    fig = figure_json(outcomes, DISPLAY_MIN_FRACTION)
    c.timings_s["view3d"] = time.perf_counter() - t0
    return fig


def _fmt_input(v) -> str:
    """An input value for the report's table: floats to 4 significant digits, dicts as key=value, lists bracketed."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt_input(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_input(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def deposit_to_ct(field_model: np.ndarray, model_affine_mm: np.ndarray, ct: Volume) -> np.ndarray:
    """A per-voxel volume fraction on the model grid put onto the CT's grid conserving its volume.

    CT coarser than the model (the usual case): each model voxel is split into ``n**3`` sub-voxels (``n`` so that
    sub-voxels are at most half a CT voxel wide); each sub-voxel's volume counts whole in the CT voxel that contains its
    centre (none outside the CT). CT finer than the model: each CT voxel takes the value of the model voxel holding
    its centre (nearest neighbour), and the result is scaled so that its volume is the model's. Either way the result
    is the fraction of each CT voxel's volume and ``sum(out) * ct_voxel_volume == sum(field) * model_voxel_volume``
    for everything inside the CT (to float rounding)."""
    f = np.asarray(field_model, dtype=np.float64)
    out = np.zeros(ct.shape, dtype=np.float64)
    idx = np.argwhere(f != 0)
    if idx.size == 0:
        return out.astype(np.float32)
    m_step = np.linalg.norm(model_affine_mm[:3, :3], axis=0)
    ct_step = np.linalg.norm(ct.affine_mm[:3, :3], axis=0)
    m_vox = abs(np.linalg.det(model_affine_mm[:3, :3]))
    c_vox = abs(np.linalg.det(ct.affine_mm[:3, :3]))
    if ct_step.min() < m_step.max():  # a finer CT: nearest neighbour, then the volume restored
        near = resample_to_ct(f.astype(np.float32), model_affine_mm, ct, order=0).astype(np.float64)
        total = near.sum() * c_vox
        if total > 0:
            near *= _inside_volume(f, model_affine_mm, ct) * m_vox / total
        return near.astype(np.float32)
    n = int(max(1, np.ceil(2.0 * m_step.max() / ct_step.min())))
    offs = (np.arange(n) + 0.5) / n - 0.5
    sub = np.stack(np.meshgrid(offs, offs, offs, indexing="ij"), axis=-1).reshape(-1, 3)
    ct_inv = np.linalg.inv(ct.affine_mm)
    to_ct = ct_inv[:3, :3] @ model_affine_mm[:3, :3]
    shift = ct_inv[:3, :3] @ model_affine_mm[:3, 3] + ct_inv[:3, 3]
    w = f[tuple(idx.T)] * m_vox / (c_vox * len(sub))
    for o in sub:
        ijk = np.rint((idx + o) @ to_ct.T + shift).astype(int)
        ok = np.all((ijk >= 0) & (ijk < np.array(ct.shape)), axis=1)
        np.add.at(out, tuple(ijk[ok].T), w[ok])
    return out.astype(np.float32)


def _inside_volume(f: np.ndarray, model_affine_mm: np.ndarray, ct: Volume) -> float:
    """Sum of ``f`` over the model voxels whose centre lies inside the CT (in model-voxel units)."""
    idx = np.argwhere(f != 0)
    ct_inv = np.linalg.inv(ct.affine_mm) @ model_affine_mm
    ijk = np.rint(idx @ ct_inv[:3, :3].T + ct_inv[:3, 3]).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(ct.shape)), axis=1)
    return float(f[tuple(idx[ok].T)].sum())


def _save_described(arr: np.ndarray, affine_mm: np.ndarray, path: Path, descrip: str, intent: str) -> Path:
    """NIfTI with ``descrip`` (what and the unit, <= 80 characters) and an intent name (<= 16 characters)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(arr), np.asarray(affine_mm, dtype=float))
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip[:80].encode("ascii", "replace")
    img.header.set_intent("label" if intent == "label" else "estimate", name=intent[:16])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def necrosis_fraction(omega: np.ndarray, cement_fraction: np.ndarray, labels: np.ndarray,
                      porosity: np.ndarray | None = None) -> np.ndarray:
    """Tissue volume fraction of each voxel that is necrotic (Omega >= 1), as the report's thermal necrosis volume
    counts it (physics.thermal): 1 - phi_c, with phi_c = p min(1, f / p) = min(f, p) the cement placed in the voxel's
    pore space p (procedures.exotherm: the model's ``porosity`` in porous bone, else the label's pore fraction of
    thermal.LABEL_THERMAL, 0 where the label has none)."""
    from ..physics import thermal

    pore = np.array([thermal.LABEL_THERMAL[i].pore_fraction if i in thermal.LABEL_THERMAL else 0.0
                     for i in range(256)])[np.asarray(labels, dtype=np.intp)]
    if porosity is not None:
        bone = (pore > 0) & (pore < 1)
        pore = np.where(bone, np.clip(np.asarray(porosity, dtype=float), 1e-3, 1.0), pore)
    f = np.asarray(cement_fraction, dtype=float)
    phi_c = np.where(pore > 0, np.minimum(f, pore), 0.0)
    return np.where(np.asarray(omega) >= 1.0, 1.0 - phi_c, 0.0).astype(np.float32)


def _write_overlays(c: Comparison, ct: Volume, out: Path, exotherms: dict, strain_fields: dict) -> dict[str, Path]:
    written = {}
    v = c.vertebra
    for state, fld in strain_fields.items():
        if fld is not None and np.shape(fld) == v.shape:
            tag = "pre" if state == "pre-treatment" else state.lower()
            arr = resample_to_ct(np.asarray(fld, np.float32), v.affine_mm, ct, order=1)
            written[f"nifti_strain_at_failure_pct_{tag}"] = _save_described(
                arr, ct.affine_mm, out / f"strain_at_failure_pct_{tag}.nii.gz",
                f"effective strain at the FE failure load, %, state {state}", "strain_pct")
    labels = np.asarray(v.labels).astype(np.uint8)
    written["nifti_labels"] = _save_described(
        resample_to_ct(labels, v.affine_mm, ct, 0).astype(np.uint8), ct.affine_mm, out / "model_labels.nii.gz",
        "pre-treatment model tissue labels (vertaug.model.labels), nearest on the CT grid", "label")
    written["nifti_labels_model_grid"] = _save_described(
        labels, v.affine_mm, out / "model_labels_model_grid.nii.gz",
        f"pre-treatment model tissue labels, model grid {v.spacing_m[0] * 1e3:g} mm (all labels)", "label")
    for tag, outcome in (("VP", c.vp), ("KP", c.kp)):
        if outcome is not None:
            written.update(_procedure_overlays(tag, outcome, exotherms.get(tag), ct, out))
    return written


def _procedure_overlays(tag: str, outcome, ex, ct: Volume, out: Path) -> dict[str, Path]:
    """Cement (volume-conserving), peak temperature, Omega and the necrotic tissue fraction of one procedure."""
    written = {}
    model = outcome.model_after
    low = tag.lower()
    f = np.asarray(outcome.cement_fraction, dtype=np.float32)
    written[f"nifti_cement_{tag}"] = _save_described(
        deposit_to_ct(f, model.affine_mm, ct), ct.affine_mm, out / f"cement_{low}.nii.gz",
        f"{tag} cement volume fraction of each voxel, mL/mL (volume-conserving)", "cement_ml_per_ml")
    if ex is None:
        return written
    arr = resample_to_ct(np.asarray(ex.max_temperature_c), model.affine_mm, ct, order=1)
    inside = resample_to_ct(np.ones(model.shape, np.float32), model.affine_mm, ct, 0) > 0
    arr = np.where(inside, arr, BODY_TEMPERATURE_C).astype(np.float32)  # outside the model: body temperature
    written[f"nifti_max_temperature_c_{tag}"] = _save_described(
        arr, ct.affine_mm, out / f"max_temperature_c_{low}.nii.gz",
        f"{tag} highest temperature during the cement exotherm, degC", "temperature_c")
    written[f"nifti_damage_omega_{tag}"] = _save_described(
        resample_to_ct(np.asarray(ex.omega, np.float32), model.affine_mm, ct, order=0), ct.affine_mm,
        out / f"damage_omega_{low}.nii.gz", f"{tag} Arrhenius damage integral Omega, dimensionless, nearest",
        "omega")
    written[f"nifti_necrosis_{tag}"] = _save_described(
        deposit_to_ct(necrosis_fraction(ex.omega, f, model.labels, model.phi), model.affine_mm, ct), ct.affine_mm,
        out / f"thermal_necrosis_{low}.nii.gz",
        f"{tag} necrotic tissue (Omega>=1, cement excluded), mL/mL (volume-conserving)", "necrosis_ml_per_ml")
    return written
