"""Vertebroplasty: cement injected through one or two transpedicular cannulas into the untreated trabecular bone.

Timeline (each step one physics module):

1. cannula paths: :func:`vertaug.model.trajectory.plan_trajectories` (uni- or bipedicular);
2. injection: :func:`vertaug.physics.flow.inject` of ``volume_ml`` at ``rate_ml_s`` (split evenly between the
   cannulas), two-phase Darcy flow of cement displacing marrow, leakage by route B, S, C, D; the cement viscosity
   follows the preset's isothermal cure at ``syringe_temperature_c`` (the operating room's, 23 C) from mixing until
   ``start_time_s``, then at ``temperature_c`` (37 C) in the bone, and shear-thins
   (:func:`vertaug.procedures.injection.cement_viscosity_law`, :mod:`vertaug.physics.rheology`). The injection is
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

from dataclasses import asdict, dataclass

import numpy as np

from vertaug.constants import BODY_TEMPERATURE_C, DEFAULT_CANNULA_GAUGE, ROOM_TEMPERATURE_C
from vertaug.errors import ParameterError, check_range
from vertaug.model.heights import height_change
from vertaug.physics import cannula
from vertaug.physics.flow import ROUTES, STOP_VOLUME, inject
from vertaug.physics.reduction import vertebroplasty_reduction
from vertaug.physics.rheology import cement_preset
from vertaug.procedures.injection import (  # noqa: F401 - shared with the kyphoplasty fill, importable from here too
    CURE_HORIZON_S,
    DEFAULT_CANNULA_LENGTH_MM,
    DEFAULT_RATE_ML_S,
    DEFAULT_START_S,
    FLUORO_DETECTION_LIMIT_ML,
    POSTERIOR_FRACTION,
    cannula_pressure_drop_series_pa,
    cement_viscosity_law,
    check_injection_plan,
    injection_controls,
    injection_metrics,
    plunger_limit_pa,
    posterior_quarter_mask,
    viscosity_law_of,
)
from vertaug.procedures.outcome import Outcome, make_outcome

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
    syringe_temperature_c: float = ROOM_TEMPERATURE_C
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
    mu = viscosity_law_of(spec)
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
