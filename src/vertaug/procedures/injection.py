"""What vertebroplasty and the kyphoplasty fill share: the cement's viscosity law, the injection done as in the
operating room (injector pressure limit, clinical stopping rules), the cannula loss and the injection's metrics.

* viscosity: the preset cured isothermally (0-D) at the syringe's temperature (the operating room's,
  ``ROOM_TEMPERATURE_C``, unless the plan says otherwise) from mixing until the injection starts, then at body
  temperature in the bone; shear-thinning (:mod:`vertaug.physics.rheology`, :func:`cement_viscosity_law`);
* plunger pressure = cannula loss + bone pressure at the cannula outlet. Cannula loss (physics/cannula.py), per
  cannula at flow q = rate / n_cannulas, with the cement taken as a power law fitted at the wall shear rate:
  gamma_w = 4 q / (pi r^3), n = 1 + log2(mu(2 gamma_w) / mu(gamma_w)), K = mu(gamma_w) gamma_w^(1 - n),
  dp = (2 K L / r) [((3n+1)/n) q / (pi r^3)]^n;
* controls (:func:`injection_controls`): the injector's plunger pressure limit lowers the rate when reached; the
  injection stops at the first of the planned volume, cement in the posterior quarter of the body, a leak visible on
  fluoroscopy (``FLUORO_DETECTION_LIMIT_ML``, a model assumption: see procedures/vertebroplasty.py), the injector
  stalled; the rule is recorded (``InjectionMetrics.stop_reason``);
* extra-osseous veins (:func:`exit_veins`): the sampled basivertebral trunk and its branches (model/veins.py) go on
  outside the body at the same radius, the trunk (route B) for ``BASIVERTEBRAL_EXIT_LENGTH_M`` to the anterior
  internal vertebral venous plexus, the n branches (route S) for ``SEGMENTAL_EXIT_LENGTH_M`` to the segmental
  (lumbar) vein; each a Poiseuille tube in series with its exit (physics/flow.py, ``ExitVein``). Lengths [D]: the
  basivertebral vein opens into the transverse branches that join the two longitudinal veins of the anterior
  internal plexus behind the body (Gray's anatomy), i.e. about half the interpedicular distance (L1 about 22 mm:
  11 mm); the anterolateral foramina drain over the body's anterolateral surface to the segmental vein, taken as a
  quarter of the body's circumference (L1 about 100 mm: 25 mm). Assumptions of geometry, not fitted to a leak;
  docs/leakage.md gives the leak's sensitivity to them.
"""

from __future__ import annotations

import math

import numpy as np

from vertaug.constants import BODY_TEMPERATURE_C, KELVIN
from vertaug.errors import ParameterError, check_range
from vertaug.physics import cannula
from vertaug.physics.flow import ROUTES, VENOUS_PRESSURE_PA, ExitVein
from vertaug.physics.rheology import (
    cement_preset,
    cure_0d,
    require_rheometry,
    time_to_alpha_s,
    viscosity_pa_s,
)
from vertaug.procedures.outcome import InjectionMetrics

__all__ = [
    "DEFAULT_CANNULA_LENGTH_MM",
    "DEFAULT_RATE_ML_S",
    "DEFAULT_START_S",
    "FLUORO_DETECTION_LIMIT_ML",
    "cannula_pressure_drop_series_pa",
    "cement_viscosity_law",
    "check_injection_plan",
    "exit_veins",
    "injection_controls",
    "injection_metrics",
    "plunger_limit_pa",
    "posterior_quarter_mask",
    "viscosity_law_of",
]

DEFAULT_RATE_ML_S = 0.05  # 3 mL/min (Bou-Francis, docs/references.md) [V]
DEFAULT_START_S = 210.0  # 3.5 min after admixing (Habib et al., see module docstring)
DEFAULT_CANNULA_LENGTH_MM = 120.0
CURE_HORIZON_S = 3600.0
#: smallest leak taken as visible on fluoroscopy, mL (model assumption, module docstring)
FLUORO_DETECTION_LIMIT_ML = 0.1
#: the posterior part of the body whose filling ends an injection (clinical rule: stop before the posterior quarter)
POSTERIOR_FRACTION = 0.25
#: extra-osseous length of the basivertebral vein and of the segmental drainage, m (module docstring) [D]
BASIVERTEBRAL_EXIT_LENGTH_M = 0.011
SEGMENTAL_EXIT_LENGTH_M = 0.025


def check_injection_plan(spec) -> None:
    """The injection-control fields shared by both plans: cement with rheometry, injector, pressure limit,
    fluoroscopy limit."""
    require_rheometry(cement_preset(spec.cement))
    check_range("syringe_temperature_c", spec.syringe_temperature_c, 0.0, 45.0, "C",
                "the cement's temperature in the syringe until injection: the operating room's (23 C), lower if "
                "pre-chilled.")
    cannula.injector_limit_pa(spec.injector)
    if spec.max_plunger_pressure_pa is not None and not spec.max_plunger_pressure_pa > VENOUS_PRESSURE_PA:
        raise ParameterError(
            f"Parameter max_plunger_pressure_pa={spec.max_plunger_pressure_pa:.4g} Pa is not above the venous "
            f"pressure {VENOUS_PRESSURE_PA:.4g} Pa: no cement could enter the bone.",
            "give the injector's limit, e.g. 3.2e6 Pa for hand injection (Krebs 2005), or None to use the injector table.")
    if spec.max_plunger_pressure_pa is not None:
        check_range("max_plunger_pressure_pa", spec.max_plunger_pressure_pa, VENOUS_PRESSURE_PA, 1e8, "Pa")
    check_range("fluoro_detection_limit_ml", spec.fluoro_detection_limit_ml, 1e-4, 5.0, "mL")


def plunger_limit_pa(spec) -> float | None:
    """The plan's plunger pressure limit, Pa: ``max_plunger_pressure_pa`` if given, else the injector table's."""
    if spec.max_plunger_pressure_pa is not None:
        return float(spec.max_plunger_pressure_pa)
    return cannula.injector_limit_pa(spec.injector)


def posterior_quarter_mask(vertebra) -> np.ndarray:
    """Body voxels in the posterior POSTERIOR_FRACTION of the body's extent along its anterior axis."""
    body = vertebra.body_mask
    a = np.asarray(vertebra.landmarks.anterior_axis, dtype=float)
    idx = np.argwhere(body)
    proj = idx @ a
    cut = proj.min() + POSTERIOR_FRACTION * (proj.max() - proj.min())
    mask = np.zeros(body.shape, dtype=bool)
    mask[tuple(idx[proj < cut].T)] = True
    return mask


def exit_veins(vertebra) -> dict | None:
    """The extra-osseous veins of the model's sampled venous anatomy (module docstring); None without one."""
    net = getattr(vertebra, "extra", {}).get("veins")
    if net is None:
        return None
    trunk = [s for s in net.segments if s.kind == "trunk"]
    branches = [s for s in net.segments if s.kind == "branch"]
    out = {}
    if trunk:
        out["B"] = ExitVein(trunk[0].radius_mm * 1e-3, BASIVERTEBRAL_EXIT_LENGTH_M, len(trunk))
    if branches:
        out["S"] = ExitVein(branches[0].radius_mm * 1e-3, SEGMENTAL_EXIT_LENGTH_M, len(branches))
    return out or None


def injection_controls(vertebra, spec, mu) -> dict:
    """The keyword arguments of :func:`flow.inject` that make the injection clinical: pressure limit with the
    cannula loss of this cement, posterior-quarter mask, visible-leak threshold, extra-osseous veins (module
    docstring)."""
    limit = plunger_limit_pa(spec)
    length_m, radius_m = spec.cannula_length_mm * 1e-3, cannula.inner_radius_m(spec.cannula_gauge)

    def drop(t_s, q):
        return float(cannula_pressure_drop_series_pa(mu, np.array([t_s]), q, length_m, radius_m)[0]) if q > 0 else 0.0

    stop_leak_ml = spec.stop_leak_ml if getattr(spec, "stop_leak_ml", None) is not None else (
        spec.fluoro_detection_limit_ml if spec.stop_at_visible_leak else None)
    return {
        "pressure_limit_pa": limit, "cannula_drop_pa": drop if limit is not None else None,
        "stop_mask": posterior_quarter_mask(vertebra) if spec.stop_at_posterior_quarter else None,
        "stop_leak_m3": None if stop_leak_ml is None else stop_leak_ml * 1e-6,
        "exit_veins": exit_veins(vertebra),
    }


def cement_viscosity_law(cement_name: str, temperature_c: float = BODY_TEMPERATURE_C, start_time_s: float = 0.0,
                         syringe_temperature_c: float | None = None):
    """``mu(t_s, shear_rate_1_s)`` for :func:`flow.inject`, ``t_s`` counted from mixing: the preset cured
    isothermally (0-D) at ``syringe_temperature_c`` in the mixing system and syringe until ``start_time_s`` (when the
    injection starts), then at ``temperature_c`` (the cement in the bone).

    The second stage is the body-temperature cure curve shifted in time so that it starts from the cure degree the
    syringe reached (the rate law depends only on alpha and T, so the shift is exact). ``syringe_temperature_c=None``:
    one temperature throughout (a bench injection with syringe and specimen at the same temperature).
    """
    cement = require_rheometry(cement_preset(cement_name))
    start = check_range("start_time_s", start_time_s, 0.0, CURE_HORIZON_S, "s")
    t_syr = temperature_c if syringe_temperature_c is None else syringe_temperature_c
    body = cure_0d(cement, CURE_HORIZON_S, "isothermal", temperature_c, n_out=3601)
    syringe = body if t_syr == temperature_c else cure_0d(cement, CURE_HORIZON_S, "isothermal", t_syr, n_out=3601)
    shift = 0.0
    if syringe is not body and start > 0.0:
        alpha_start = float(cure_0d(cement, start, "isothermal", t_syr, n_out=2).alpha[-1])
        shift = _body_time_at_alpha_s(cement, body, alpha_start, temperature_c) - start
    t_body_k, t_syr_k = temperature_c + KELVIN, t_syr + KELVIN

    def mu(t_s, shear_rate_1_s):
        t = np.asarray(t_s, dtype=float)
        in_bone = t >= start
        alpha = np.where(in_bone, np.interp(t + shift, body.t_s, body.alpha), np.interp(t, syringe.t_s, syringe.alpha))
        return viscosity_pa_s(cement, alpha, np.where(in_bone, t_body_k, t_syr_k), shear_rate_1_s)

    return mu


def _body_time_at_alpha_s(cement, body, alpha: float, temperature_c: float) -> float:
    """Time from mixing at which the isothermal cure at ``temperature_c`` reaches ``alpha``; past the curve's end
    (a syringe warmer than the body cured further than the body can) the curve's end, where alpha stays."""
    if alpha <= cement.alpha0:
        return 0.0
    if alpha >= float(body.alpha[-1]) - 1e-9:
        return float(body.t_s[-1])
    return time_to_alpha_s(cement, alpha, temperature_c)


def viscosity_law_of(spec):
    """The viscosity law of a plan (Vertebroplasty or Kyphoplasty): its cement, body temperature, start time and
    syringe temperature."""
    return cement_viscosity_law(spec.cement, spec.temperature_c, spec.start_time_s, spec.syringe_temperature_c)


def cannula_pressure_drop_series_pa(mu, t_s, flow_per_cannula_m3_s, length_m: float, radius_m: float):
    """Cannula loss at each time (power law fitted to ``mu(t, gamma)`` at the wall shear rate; module docstring).
    ``flow_per_cannula_m3_s``: one flow, or one per time (the rate falls at the pressure limit); 0 where it is 0."""
    t = np.asarray(t_s, dtype=float)
    q = np.broadcast_to(np.asarray(flow_per_cannula_m3_s, dtype=float), t.shape)
    gw = 4.0 * np.maximum(q, 1e-30) / (math.pi * radius_m**3)
    mu1 = np.broadcast_to(np.asarray(mu(t, gw), float), t.shape)
    mu2 = np.broadcast_to(np.asarray(mu(t, 2 * gw), float), t.shape)
    n = np.clip(1.0 + np.log2(mu2 / mu1), 0.05, 2.0)
    out = np.zeros_like(t)
    for i in range(t.size):
        if q[i] > 0:
            K = mu1[i] * gw[i] ** (1.0 - n[i])
            out[i] = cannula.pressure_drop_pa(float(q[i]), length_m, radius_m, consistency_pa_sn=K, n=n[i])
    return out


def injection_metrics(inj, spec, mu, body_ml: float, voxel_ml: float = math.nan) -> tuple[InjectionMetrics, dict]:
    """Metrics of one injection (flow.InjectionResult) shared by vertebroplasty and the kyphoplasty fill, and the
    pressure series: bone pressure at the tip (largest over cannulas), cannula loss and plunger pressure (Pa).

    ``spec`` supplies rate_ml_s, start_time_s, cannula_length_mm and cannula_gauge; ``mu`` is the viscosity law;
    ``voxel_ml`` the model's voxel volume (the CT detection limit).
    """
    n_can = inj.tip_pressure_pa.shape[1]
    rate = inj.rate_m3_s if inj.rate_m3_s is not None else np.full(inj.t_s.shape, spec.rate_ml_s * 1e-6)
    # each step's rate was set with the cement as it was at the step's start (flow.inject): the loss at that time
    t_step = np.concatenate([inj.t_s[:1], inj.t_s[:-1]])
    dp_can = cannula_pressure_drop_series_pa(mu, spec.start_time_s + t_step, rate / n_can,
                                             spec.cannula_length_mm * 1e-3, cannula.inner_radius_m(spec.cannula_gauge))
    bone = np.max(inj.tip_pressure_pa, axis=1)
    plunger = dp_can + bone
    limit = plunger_limit_pa(spec)
    if limit is not None:  # the injector delivers at most its limit: a stalled step records the limit, not the
        over = plunger > limit  # pressure the planned rate would have needed
        dp_can = np.where(over, np.maximum(limit - bone, 0.0), dp_can)
        plunger = np.where(over, limit, plunger)
    leaked = {x: float(inj.leaked_m3[x][-1] * 1e6) for x in ROUTES}
    injected = float(inj.injected_m3[-1] * 1e6)
    i_max = int(np.argmax(plunger[1:])) + 1 if plunger.size > 1 else 0
    metrics = InjectionMetrics(
        injected_ml=injected,
        leaked_ml=float(sum(leaked.values())),
        leaked_ml_by_route=leaked,
        leak_fraction=float(sum(leaked.values())) / injected if injected > 0 else math.nan,
        fill_fraction_of_body=float(inj.in_bone_m3[-1] * 1e6) / body_ml,
        max_injection_pressure_pa=float(plunger[i_max]),
        max_injection_pressure_cannula_pa=float(dp_can[i_max]),
        max_injection_pressure_bone_pa=float(bone[i_max]),
        cannula_share_of_pressure=float(dp_can[i_max] / plunger[i_max]),
        cement_mass_balance_error_max=float(np.max(inj.mass_balance_error)),
        injection_time_s=float(inj.t_s[-1]),
        n_cannulas=int(n_can),
        stop_reason=inj.stop_reason,
        pressure_limit_pa=math.nan if limit is None else limit,
        ct_detection_limit_ml=float(voxel_ml),
        fluoro_detection_limit_ml=float(spec.fluoro_detection_limit_ml),
        leaked_ml_by_route_ct={x: (v if v >= voxel_ml else 0.0) for x, v in leaked.items()},
    )
    return metrics, {"bone": bone, "cannula": dp_can, "plunger": plunger}
