"""How far each simulated number can be trusted: its numerical range, its detection limit, the reason a row shows no
difference, and the validation cases that test its model (trust marks).

Ranges. Each simulated value gets a half-width ``u`` (the row shows ``value +/- u``); the difference KP - VP gets
``u_VP + u_KP`` (conservative: the two are added, not combined in quadrature). A procedure is "favoured" only when
``|KP - VP| > u_VP + u_KP``. The half-widths are numerical (discretisation) uncertainties, measured, not chosen:

* volumes on the voxel grid (cement leaked by route): one model voxel; values under one voxel are below what the
  model resolves (and below what a CT at the model's spacing shows) and print as "none";
* thermal necrosis: half the volume of the boundary shell of the Omega >= 1 region (each voxel there is counted
  whole or not at all);
* heights: half a model voxel; wedge angle: the angle half a voxel makes over the body's AP depth, at both walls;
* peak temperatures: 0.6 C, the largest change of a peak cement temperature between the 1 mm and the 0.5 mm model
  of the demo level (docs/report.md, "Run time of vertaug demo");
* time above 50 C: the largest exotherm time step (procedures.exotherm.DT_MAX_S);
* injection pressures: 1 %, the spherical-front validation case's miss of the analytic front (docs/validation.md);
* FE stiffness and strength: the largest relative change of the untreated demo level between the 1 mm model and
  finer ones (``scripts/resolution_check.py``; FE_RESOLUTION_REL below).

Parameter uncertainty (material, rheology, calibration) is not sampled here but in :mod:`vertaug.report.sampling`
(``--samples``); a row's "favoured" then needs the sampled 5-95 % range of the difference, widened by these numerical
half-widths, to exclude zero (``report.compare.MetricRow.difference_range``).

Trust marks come from the last full ``vertaug validate`` run (``validation_last.json`` beside this module, made by
``scripts/update_validation_marks.py`` from docs/validation.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

import numpy as np
from scipy import ndimage

__all__ = ["FE_RESOLUTION_REL", "PRESSURE_REL", "TEMPERATURE_RESOLUTION_C", "VALIDATION_FOR_METRIC", "Trust",
           "detection_limit", "half_widths", "row_reason", "trust_marks"]

#: Largest change of a peak cement temperature, 1 mm vs 0.5 mm model of the demo level (KP 93.1 vs 92.5 C).
TEMPERATURE_RESOLUTION_C = 0.6
#: FE stiffness and strength: the largest relative change of the untreated demo level between the 1 mm model and
#: the finer ones (scripts/resolution_check.py, 2026-11-30): stiffness 54858 N/mm at 1 mm, 53775 at 0.75 mm (-2.0 %),
#: 55105 at 0.5 mm (+0.45 %); strength 5559 N at 1 mm and at 0.75 mm, 5645 N at 0.5 mm (+1.5 %). The convergence is
#: not monotone (1.5 mm: 42322 N/mm, 4511 N: the one-voxel cortex shell thickens), so the spread of the finer models
#: is used.
FE_RESOLUTION_REL = {"stiffness_n_per_mm": 0.020, "strength_n": 0.015}
#: Injection pressures: the spherical-front validation case's front radius, -0.8 % of the analytic one (1 % used).
PRESSURE_REL = 0.01

_VOLUME_KEYS = ("leaked_ml", "leaked_ml_B", "leaked_ml_S", "leaked_ml_C", "leaked_ml_D")
_ROUTE_WORDS = {"leaked_ml_B": "the basivertebral vein", "leaked_ml_S": "a segmental vein",
                "leaked_ml_C": "a cortical break", "leaked_ml_D": "the endplate into the disc"}


def detection_limit(key: str, voxel_ml: float, injected_ml: float | None = None) -> float | None:
    """The value under which a metric is below the model's resolution (shown as "none"), or None."""
    if key in _VOLUME_KEYS or key == "necrosis_volume_ml":
        return voxel_ml
    if key == "leak_fraction" and injected_ml:
        return voxel_ml / injected_ml
    return None


def _necrosis_shell_ml(omega, voxel_ml: float) -> float:
    dead = np.asarray(omega) >= 1.0
    if not dead.any():
        return 0.0
    shell = dead & ~ndimage.binary_erosion(dead)
    return 0.5 * float(shell.sum()) * voxel_ml


def half_widths(key: str, value: float | None, ctx: dict) -> float | None:
    """Numerical half-width of one simulated value (None: not simulated, or no measured uncertainty).

    ``ctx``: voxel_ml, spacing_mm, ap_depth_mm, injected_ml, and omega (the procedure's damage field) when known."""
    if value is None or not math.isfinite(value):
        return None
    voxel_ml, s_mm = ctx["voxel_ml"], ctx["spacing_mm"]
    if key in _VOLUME_KEYS:
        return voxel_ml
    if key == "leak_fraction":
        return voxel_ml / ctx["injected_ml"] if ctx.get("injected_ml") else None
    if key == "necrosis_volume_ml":
        om = ctx.get("omega")
        return max(_necrosis_shell_ml(om, voxel_ml), voxel_ml) if om is not None else None
    if key in ("height_restored_mm", "height_anterior_mm"):
        return 0.5 * s_mm
    if key == "wedge_angle_deg" and ctx.get("ap_depth_mm"):
        return 2.0 * math.degrees(math.atan(0.5 * s_mm / ctx["ap_depth_mm"]))
    if key in ("peak_temperature_c", "peak_temperature_canal_c"):
        return TEMPERATURE_RESOLUTION_C
    if key == "time_above_50c_canal_s":
        from ..procedures.exotherm import DT_MAX_S

        return DT_MAX_S
    if key in ("max_injection_pressure_pa", "max_injection_pressure_bone_pa"):
        return PRESSURE_REL * abs(value)
    if key in FE_RESOLUTION_REL:
        return FE_RESOLUTION_REL[key] * abs(value)
    return None


# --------------------------------------------------------------------------------------------------- trust marks


@dataclass(frozen=True)
class Trust:
    """One validation result bearing on a row: case, quantity, relative error and whether it is within the spread."""

    case: str
    quantity: str
    rel_error_pct: float | None
    within: bool
    published: str = ""
    ours: str = ""

    @property
    def text(self) -> str:
        if self.within:
            return f"{self.case}: {self.quantity} agrees"
        err = (f" by {self.rel_error_pct:+.0f} %" if self.rel_error_pct is not None else
               f" (published {self.published}, ours {self.ours})")
        return f"{self.case}: {self.quantity} misses{err}"


#: Which validation cases test the model behind each metric (case name, substring of the quantity or "" for all).
VALIDATION_FOR_METRIC: dict[str, tuple[tuple[str, str], ...]] = {
    "max_injection_pressure_pa": (("baroud_cannula", ""), ("spherical_front", "pressure")),
    "max_injection_pressure_bone_pa": (("spherical_front", "pressure"),),
    "fill_fraction_of_body": (("spherical_front", "radius"),),
    "height_restored_mm": (("belkoff_2001_height", ""), ("balloon_pressure_volume", "")),
    "height_anterior_mm": (("belkoff_2001_height", ""),),
    "wedge_angle_deg": (("belkoff_2001_height", ""),),
    "peak_temperature_c": (("porcine_thermal_bolus", "centre peak"), ("cure_adiabatic_23c", ""),
                           ("astm_f451_moulds", ""), ("iso5833_named_cements", "peak")),
    "peak_temperature_canal_c": (("porcine_thermal_bolus", "cortex"),),
    "time_above_50c_canal_s": (("porcine_thermal_bolus", "time above"),),
    "necrosis_volume_ml": (("porcine_thermal_bolus", "time above"),),
    "set_time_min": (("cure_isothermal_37c", ""),),
    "peak_time_after_mixing_min": (("iso5833_named_cements", "setting time"),),
    "stiffness_n_per_mm": (("homogeneous_block_stiffness", ""), ("two_material_column", ""),
                           ("belkoff_2001_mechanics", "stiffness")),
    "strength_n": (("belkoff_2001_mechanics", "stronger"),),
}


@lru_cache(maxsize=1)
def _validation_results() -> tuple[dict, ...]:
    path = files("vertaug.report") / "validation_last.json"
    try:
        return tuple(json.loads(path.read_text())["results"])
    except (FileNotFoundError, KeyError, ValueError):
        return ()


def trust_marks(key: str, procedure: str | None = None) -> list[Trust]:
    """Validation results bearing on ``key`` (for one procedure's row when the quantity names VP or KP)."""
    out = []
    for case, sub in VALIDATION_FOR_METRIC.get(key, ()):
        for r in _validation_results():
            if r["case"] != case or sub.lower() not in r["quantity"].lower():
                continue
            q = r["quantity"]
            if procedure and (q.endswith(", VP") or q.startswith("VP ")) and procedure != "VP":
                continue
            if procedure and (q.endswith(", KP") or q.startswith("KP ")) and procedure != "KP":
                continue
            out.append(Trust(case, q, r.get("rel_error_pct"), bool(r.get("within")), str(r.get("published", "")),
                             str(r.get("ours", ""))))
    return out


# ------------------------------------------------------------------------------------------------------- reasons


def row_reason(key: str, vp: float | None, kp: float | None, ctx: dict) -> str:
    """Why a row shows no difference, or nothing at all, from the physics (empty when there is nothing to say)."""
    lim = detection_limit(key, ctx["voxel_ml"], ctx.get("injected_ml"))
    if key in _VOLUME_KEYS + ("leak_fraction",) and lim is not None and all(
            v is not None and abs(v) < lim for v in (vp, kp)):
        route = _ROUTE_WORDS.get(key)
        where = f"through {route}" if route else "out of the body"
        return (f"no leak {where} in either procedure (under one model voxel, {ctx['voxel_ml']:.2g} mL): the "
                "cement front reached no such exit")
    a, b = ctx.get("injected_ml"), ctx.get("kp_injected_ml")
    if key in _VOLUME_KEYS and a and b and abs(a - b) > 0.1 * max(a, b):
        return (f"the procedures injected different volumes (VP {a:.2f}, KP {b:.2f} mL): the leak fraction row "
                "compares like with like")
    if key == "injected_ml":
        stops = {n: r for n, r in (ctx.get("stop_reason") or {}).items() if r and r != "volume reached"}
        return "; ".join(f"{n} injection stopped: {r}" for n, r in stops.items())
    if key in ("height_restored_mm", "height_anterior_mm", "wedge_angle_deg"):
        lift = ctx.get("kp_lift_mm")
        parts = ["VP: postural and hydraulic lift below one voxel (physics/reduction.py)"]
        if lift is not None and lift < 0.5 * ctx["spacing_mm"]:
            parts.append("KP: no fracture at this level to reduce, the endplate is not lifted" if not ctx.get(
                "fracture") else "KP: the balloon did not lift the endplate")
        return "; ".join(parts)
    if key in ("peak_temperature_canal_c", "time_above_50c_canal_s") and all(
            v is not None and v < 45.0 for v in (ctx.get("vp_canal_c"), ctx.get("kp_canal_c"))):
        return "the cement stays far from the canal: the wall stays near body temperature"
    if key == "necrosis_volume_ml" and vp is not None and kp is not None and abs(kp - vp) <= ctx.get("u_sum", 0):
        a, b = ctx.get("injected_ml"), ctx.get("kp_injected_ml")
        if a is not None and b is not None and abs(a - b) <= 0.05 * max(a, b):
            return "same cement volume, same kinetics: the hot zones are of the same size"
        return "the difference is within the numerical range of the necrosis volume (half its boundary shell)"
    return ""
