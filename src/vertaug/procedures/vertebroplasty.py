"""Vertebroplasty: cement injected through one or two transpedicular cannulas into the untreated trabecular bone.

Timeline (each step one physics module):

1. cannula paths: :func:`vertaug.model.trajectory.plan_trajectories` (uni- or bipedicular);
2. injection: :func:`vertaug.physics.flow.inject` of ``volume_ml`` at ``rate_ml_s`` (split evenly between the
   cannulas), two-phase Darcy flow of cement displacing marrow, leakage by route B, S, C, D; the cement viscosity
   follows the preset's isothermal cure at ``temperature_c`` from ``start_time_s`` after mixing and shear-thins
   (:func:`vertaug.procedures.kyphoplasty.cement_viscosity_law`, :mod:`vertaug.physics.rheology`). The injection is
   done as in the operating room (:func:`injection_controls`): the injector's plunger pressure limit
   (``injector``, the table :data:`vertaug.physics.cannula.INJECTORS`, or ``max_plunger_pressure_pa``) lowers the
   rate when it is reached, and the injection stops at the first of: the planned volume; cement in the posterior
   quarter of the body (``stop_at_posterior_quarter``; the quarter of the body's extent along its anterior axis
   nearest the canal); a leak visible on fluoroscopy (``stop_at_visible_leak``: leaked volume above
   ``fluoro_detection_limit_ml``; ``stop_leak_ml`` overrides the threshold); the injector stalled at its limit.
   The rule that ended it is ``InjectionMetrics.stop_reason``;
3. plunger pressure = cannula loss + bone pressure at the cannula outlet. Cannula loss (physics/cannula.py), per
   cannula at flow q = rate / n_cannulas, with the cement taken as a power law fitted at the wall shear rate:
   gamma_w = 4 q / (pi r^3), n = 1 + log2(mu(2 gamma_w) / mu(gamma_w)), K = mu(gamma_w) gamma_w^(1 - n),
   dp = (2 K L / r) [((3n+1)/n) q / (pi r^3)]^n.

Detection limits (``InjectionMetrics``): on CT, one voxel of the model grid (the CT at the model's resolution cannot
show a smaller leak) [D]; on fluoroscopy ``FLUORO_DETECTION_LIMIT_ML`` = 0.1 mL. No published smallest visible
volume was found: the sources give only fractions of CT-detected leaks seen on radiographs (Yeom 2003 JBJS Br
85:83, CT finds 1.5x as many; Schmidt 2005 Eur Spine J 14:466, lateral film 34 %, lateral + AP 48 %; Martin 2012
Acta Radiol 53:569, 50 %) [V]; 0.1 mL (a 5.8 mm sphere, several fluoroscopy pixels across) is a model assumption,
a plan field to change. A leak below the CT limit is reported as none (``leaked_ml_by_route_ct``).

Start time default 210 s: the earliest injection time after admixing (3.5 min) of the benchmark leakage study of
Habib, Serhan, Marchek & Baroud (Int J Spine Surg 4:26, http://www.ijssurgery.com/content/4/1/26). Cannula length
default 120 mm (the sanity case of docs/flow.md). Heights after: the postural reduction and the hydraulic lift of a
mobile fragment by the cement's pore pressure (:func:`vertaug.physics.reduction.vertebroplasty_reduction`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vertaug.constants import BODY_TEMPERATURE_C, DEFAULT_CANNULA_GAUGE, KELVIN
from vertaug.errors import ParameterError, check_range
from vertaug.physics import cannula
from vertaug.physics.flow import ROUTES, STOP_VOLUME, VENOUS_PRESSURE_PA, inject
from vertaug.physics.reduction import vertebroplasty_reduction
from vertaug.physics.rheology import cement_preset, cure_0d, viscosity_pa_s
from vertaug.model.heights import height_change
from vertaug.procedures.outcome import InjectionMetrics, Outcome, make_outcome

__all__ = [
    "FLUORO_DETECTION_LIMIT_ML",
    "Vertebroplasty",
    "cannula_pressure_drop_series_pa",
    "check_injection_plan",
    "injection_controls",
    "injection_metrics",
    "posterior_quarter_mask",
    "run_vertebroplasty",
]

DEFAULT_RATE_ML_S = 0.05  # 3 mL/min (Bou-Francis, docs/references.md) [V]
DEFAULT_START_S = 210.0  # 3.5 min after admixing (Habib et al., see module docstring)
DEFAULT_CANNULA_LENGTH_MM = 120.0
CURE_HORIZON_S = 3600.0
#: smallest leak taken as visible on fluoroscopy, mL (model assumption, module docstring)
FLUORO_DETECTION_LIMIT_ML = 0.1
#: the posterior part of the body whose filling ends an injection (clinical rule: stop before the posterior quarter)
POSTERIOR_FRACTION = 0.25


@dataclass(frozen=True)
class Vertebroplasty:
    """A vertebroplasty plan (validated at construction)."""

    volume_ml: float = 4.0
    rate_ml_s: float = DEFAULT_RATE_ML_S
    approach: str = "bipedicular"
    cannula_gauge: int = DEFAULT_CANNULA_GAUGE
    cement: str = "low"
    start_time_s: float = DEFAULT_START_S
    stop_leak_ml: float | None = None
    temperature_c: float = BODY_TEMPERATURE_C
    cannula_length_mm: float = DEFAULT_CANNULA_LENGTH_MM
    cfl: float = 1.0
    injector: str = "hand"
    max_plunger_pressure_pa: float | None = None
    stop_at_posterior_quarter: bool = True
    stop_at_visible_leak: bool = True
    fluoro_detection_limit_ml: float = FLUORO_DETECTION_LIMIT_ML

    def __post_init__(self):
        if self.approach not in ("bipedicular", "unipedicular"):
            raise ParameterError(f"approach={self.approach!r} is unknown.", "use 'bipedicular' or 'unipedicular'.")
        cement_preset(self.cement)
        cannula.inner_radius_m(self.cannula_gauge)
        check_range("volume_ml", self.volume_ml, 1e-3, 30.0, "mL", "a vertebroplasty injects about 2-8 mL.")
        check_range("rate_ml_s", self.rate_ml_s, 1e-4, 1.0, "mL/s", "e.g. 0.05 mL/s (3 mL/min).")
        check_range("start_time_s", self.start_time_s, 0.0, 1800.0, "s")
        check_range("temperature_c", self.temperature_c, 15.0, 45.0, "C")
        check_range("cannula_length_mm", self.cannula_length_mm, 20.0, 300.0, "mm")
        check_range("cfl", self.cfl, 0.01, 20.0)
        if self.stop_leak_ml is not None:
            check_range("stop_leak_ml", self.stop_leak_ml, 0.0, 30.0, "mL")
        check_injection_plan(self)


def check_injection_plan(spec) -> None:
    """The injection-control fields shared by both plans: injector, pressure limit, fluoroscopy limit."""
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


def injection_controls(vertebra, spec, mu) -> dict:
    """The keyword arguments of :func:`flow.inject` that make the injection clinical: pressure limit with the
    cannula loss of this cement, posterior-quarter mask, visible-leak threshold (module docstring)."""
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
    }


def cement_viscosity_law(cement_name: str, temperature_c: float = BODY_TEMPERATURE_C):
    """``mu(t_s, shear_rate_1_s)`` for :func:`flow.inject`: the preset cured isothermally (0-D) from mixing."""
    cement = cement_preset(cement_name)
    cure = cure_0d(cement, CURE_HORIZON_S, "isothermal", temperature_c, n_out=3601)
    t_k = temperature_c + KELVIN

    def mu(t_s, shear_rate_1_s):
        alpha = np.interp(t_s, cure.t_s, cure.alpha)
        return viscosity_pa_s(cement, alpha, t_k, shear_rate_1_s)

    return mu


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
        pressure_limit_pa=math.nan if plunger_limit_pa(spec) is None else plunger_limit_pa(spec),
        ct_detection_limit_ml=float(voxel_ml),
        fluoro_detection_limit_ml=float(spec.fluoro_detection_limit_ml),
        leaked_ml_by_route_ct={x: (v if v >= voxel_ml else 0.0) for x, v in leaked.items()},
    )
    return metrics, {"bone": bone, "cannula": dp_can, "plunger": plunger}


def run_vertebroplasty(vertebra, spec: Vertebroplasty | None = None, trajectories=None) -> Outcome:
    """Simulate ``spec`` on ``vertebra`` (a :class:`vertaug.model.vertebra.Vertebra`); returns an Outcome."""
    spec = spec or Vertebroplasty()
    if trajectories is None:
        from vertaug.model.trajectory import plan_trajectories

        trajectories = plan_trajectories(vertebra, approach=spec.approach)
    notes = []
    for t in trajectories:
        notes.extend(t.warnings)
    tips = np.concatenate([np.asarray(t.tip_voxels) for t in trajectories])
    m = vertebra.materials
    kt, kl = m.permeability_transverse_m2, m.permeability_m2
    mu = cement_viscosity_law(spec.cement, spec.temperature_c)
    inj = inject(vertebra.labels, vertebra.spacing_m, vertebra.phi, (kt, kt, kl), tips, spec.rate_ml_s * 1e-6,
                 spec.volume_ml * 1e-6, mu, start_time_s=spec.start_time_s, cfl=spec.cfl,
                 **injection_controls(vertebra, spec, mu))
    if inj.stop_reason != STOP_VOLUME:
        notes.append(f"injection stopped: {inj.stop_reason} after {inj.injected_m3[-1] * 1e6:.2f} mL")
    metrics, pressures = injection_metrics(inj, spec, mu, vertebra.body_volume_ml, vertebra.voxel_volume_m3 * 1e6)
    cement_fraction = (inj.saturation * vertebra.phi).astype(np.float32)
    bone, dp_can, plunger = pressures["bone"], pressures["cannula"], pressures["plunger"]
    series = {
        "t_s": inj.t_s, "injected_ml": inj.injected_m3 * 1e6, "in_bone_ml": inj.in_bone_m3 * 1e6,
        "tip_pressure_pa": bone, "cannula_pressure_drop_pa": dp_can, "plunger_pressure_pa": plunger,
        **{f"leaked_ml_{x}": inj.leaked_m3[x] * 1e6 for x in ROUTES},
    }
    inputs = asdict(spec)
    inputs["tips_ijk"] = [tuple(float(c) for c in t.tip_ijk) for t in trajectories]
    # postural reduction and the cement's hydraulic lift of a mobile fragment (physics/reduction.py)
    labels_after, reduction_notes, _ = vertebroplasty_reduction(vertebra, inj)
    notes.extend(reduction_notes)
    heights = height_change(vertebra, labels_after)
    return make_outcome("vertebroplasty", cement_fraction, inj.arrival_time_s, series, metrics, heights, vertebra,
                        model_before=vertebra, fields={"cement_saturation": inj.saturation}, inputs=inputs,
                        notes=notes)
