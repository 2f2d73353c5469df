"""Kyphoplasty: balloon inflation (cavity, compacted shell, endplate lift), deflation, then cement fill of the cavity.

Timeline (each step one physics module):

1. cannula paths: :func:`vertaug.model.trajectory.plan_trajectories` (uni- or bipedicular), one balloon per cannula,
   centred at the cannula tip;
2. reduction before the balloon (:mod:`vertaug.physics.reduction`): the postural reduction prone on bolsters (the same
   as in vertebroplasty) and the fragment's resistance from ``fracture_mobility`` ('acute' or 'chronic');
   balloon: :func:`vertaug.physics.balloon.inflate` with the ``balloon_device`` of the device table (its shape along
   the cannula, rated volume and pressure), volume- or pressure-controlled, which crushes bone into a compacted
   shell, lifts a depressed superior endplate against that resistance and recoils on deflation (equations in that
   module's docstring);
3. the treated model: :func:`vertaug.physics.balloon.treated_vertebra` (cavity = label DEFECT, open void, permeability of
   an open slot of its local width; shell with compacted BV/TV, its HU, k, E and yield from the same laws);
4. fill: :func:`vertaug.physics.flow.inject` of ``cement_ml`` (or ``fill_ratio`` x the cavity volume, which is the
   balloons' final volume: the membrane's space) of cement through the same cannula tips into the cavity and the
   bone around it, at ``rate_ml_s``. The cavity fills first: it has no bone to resist the flow (open-slot
   permeability) and the cement enters it at a bone pressure near the venous one before it interdigitates the shell.
   A gap opened under the lifted plate beyond the membrane (``fracture_gap``) is a dead-end pocket whose fluid can
   only leave through the bone around it; it is open to the cement but not planned for (demo L1: 0.83 mL, 3 % of it
   more than half full). Until 2026-12-01 the plan counted the gap next to the membrane as cavity (4.11 mL for a
   3.42 mL balloon space): the balloon space filled completely and the 0.5 mL beyond it went into the bone beside
   the left balloon and out through an intraosseous vein channel 1-2 voxels from the cavity wall to route S, a
   visible leak (0.10 mL) at 4.09 mL with 86 % of that "cavity" filled. The cement viscosity
   follows the preset's cure (0-D, isothermal) at ``syringe_temperature_c`` (23 C) in the syringe from mixing until
   ``start_time_s`` and at body temperature in the bone after it, and shear-thins (:func:`vertaug.physics.rheology.viscosity_pa_s`); leaks by route B, S, C, D as in VP; the plunger
   pressure adds the cannula loss as vertebroplasty computes it (power law at the wall shear rate, 11 G, 120 mm).
   Start time default 210 s after mixing, as vertebroplasty (Habib et al. benchmark leakage study). The fill
   uses CFL 10 by default (vertebroplasty: 1): the flow solver's saturation step is implicit, and the open cavity
   would otherwise take thousands of steps; give ``cfl`` to change it (use the same value for a VP comparison).
   The largest saturation change per step is 0.6 (``max_saturation_change``; the solver's default, used by
   vertebroplasty, is 0.3): half the steps, with the cement in and around the cavity within 1.5 % (measured, see
   DEFAULT_MAX_SATURATION_CHANGE).

Heights before, inflated and after are measured by :func:`vertaug.model.heights.height_change` (the morphometry's
function, along the level's spine axis; 15 / 50 / 85 % of the AP depth). Height restored, as a percentage of the height
lost, uses the posterior height before treatment as the reference of the anterior (wedge) height (the Genant
reference): ``restored % = 100 (Ha_after - Ha_before) / (Hp_before - Ha_before)``; NaN with a note when less than one
voxel was lost. The cement fill does not move the endplate (it flows into the open cavity at a low pressure): the filled
cavity keeps the height reached after deflation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vertaug.constants import BODY_TEMPERATURE_C, DEFAULT_CANNULA_GAUGE, PSI_PA, ROOM_TEMPERATURE_C
from vertaug.errors import ParameterError, check_range
from vertaug.model.heights import height_change, model_heights
from vertaug.physics import balloon as bl
from vertaug.physics import cannula
from vertaug.physics.flow import ROUTES, inject
from vertaug.physics.rheology import cement_preset
from vertaug.procedures.injection import (
    DEFAULT_CANNULA_LENGTH_MM,
    DEFAULT_START_S,
    FLUORO_DETECTION_LIMIT_ML,
    cement_viscosity_law,
    check_injection_plan,
    exit_veins,
    injection_controls,
    injection_metrics,
    viscosity_law_of,
)
from vertaug.procedures.outcome import BalloonMetrics, Outcome, make_outcome

__all__ = ["Kyphoplasty", "cement_viscosity_law", "fill_with_cement", "run_kyphoplasty"]

DEFAULT_RATE_ML_S = 0.05  # 3 mL/min (Bou-Francis, docs/references.md) [V]
DEFAULT_CFL = 10.0  # the flow solver's saturation step is implicit (stable at any CFL); see docs/kyphoplasty.md
#: Largest saturation change per fill step (flow.inject; vertebroplasty keeps the solver's 0.3). Measured on the demo's
#: L1 fill (2 x 2 mL cavity, 4.0 mL, 2026-11-24, with the grown implicit set of flow.inject): 0.3 -> 172 steps,
#: 1.558 mL in the cavity, 2723 cells > 50 % outside; 0.6 -> 91 steps, 1.537 mL, 2751 cells (-1.3 %, +1.0 %);
#: 1.0 -> 40 steps, 1.494 mL, 2819 cells (-4.1 %, +3.5 %).
DEFAULT_MAX_SATURATION_CHANGE = 0.6


@dataclass(frozen=True)
class Kyphoplasty:
    """A kyphoplasty plan. Give ``balloon_ml`` (per balloon, volume-controlled) or ``max_pressure_pa``
    (pressure-controlled, then ``balloon_ml`` must be None). Cement volume: ``cement_ml`` if given, else
    ``fill_ratio`` x the cavity volume after deflation."""

    balloon_ml: float | None = 3.0
    max_pressure_pa: float | None = None
    approach: str = "bipedicular"
    cement: str = "high"
    fill_ratio: float = 1.0
    cement_ml: float | None = None
    rate_ml_s: float = DEFAULT_RATE_ML_S
    start_time_s: float = DEFAULT_START_S
    temperature_c: float = BODY_TEMPERATURE_C
    syringe_temperature_c: float = ROOM_TEMPERATURE_C
    cannula_gauge: int = DEFAULT_CANNULA_GAUGE
    cannula_length_mm: float = DEFAULT_CANNULA_LENGTH_MM
    device_max_pressure_pa: float | None = None  # default: the device's rated pressure
    balloon_max_ml: float | None = None  # default: the device's rated volume
    preload_n: float = bl.PRESET_PRELOAD_N
    balloon_device: str = bl.DEFAULT_DEVICE
    fracture_mobility: str = "acute"
    cfl: float = DEFAULT_CFL
    max_saturation_change: float = DEFAULT_MAX_SATURATION_CHANGE
    # injection as it is done (vertebroplasty.injection_controls): injector limit and stopping rules
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
        check_range("cannula_length_mm", self.cannula_length_mm, 20.0, 300.0, "mm")
        from vertaug.physics.reduction import mobility

        mobility(self.fracture_mobility)
        device = bl.device(self.balloon_device)
        dev = device.rated_pressure_pa if self.device_max_pressure_pa is None else check_range(
            "device_max_pressure_pa", self.device_max_pressure_pa, 1e4, device.rated_pressure_pa, "Pa",
            f"the {device.name} balloon is rated for {device.rated_pressure_pa / PSI_PA:.0f} psi.")
        bmax = device.rated_volume_ml if self.balloon_max_ml is None else check_range(
            "balloon_max_ml", self.balloon_max_ml, 0.1, device.rated_volume_ml, "mL",
            f"the {device.name} balloon is rated for {device.rated_volume_ml:g} mL.")
        if (self.balloon_ml is None) == (self.max_pressure_pa is None):
            raise ParameterError("Give exactly one of balloon_ml and max_pressure_pa.",
                                 "balloon_ml=3.0 (volume-controlled) or balloon_ml=None, max_pressure_pa=1.5e6.")
        if self.balloon_ml is not None:
            check_range("balloon_ml", self.balloon_ml, 0.05, bmax, "mL",
                        f"one {device.name} balloon holds at most {bmax:g} mL; choose a larger device.")
        else:
            if self.max_pressure_pa > dev:
                raise ParameterError(
                    f"Parameter max_pressure_pa={self.max_pressure_pa:.4g} Pa ({self.max_pressure_pa / PSI_PA:.0f} "
                    f"psi) is above the device maximum {dev:.4g} Pa ({dev / PSI_PA:.0f} psi).",
                    "lower max_pressure_pa (clinical inflations: 175 +/- 37 psi), or give the device's rating.")
            check_range("max_pressure_pa", self.max_pressure_pa, 1e4, dev, "Pa")
        check_range("fill_ratio", self.fill_ratio, 0.1, 3.0, "(-)", "cement volume / cavity volume, typically 1.")
        if self.cement_ml is not None:
            check_range("cement_ml", self.cement_ml, 0.1, 30.0, "mL")
        check_range("rate_ml_s", self.rate_ml_s, 1e-3, 1.0, "mL/s", "e.g. 0.05 mL/s (3 mL/min).")
        check_range("start_time_s", self.start_time_s, 0.0, 1800.0, "s")
        check_range("temperature_c", self.temperature_c, 15.0, 45.0, "C")
        check_range("preload_n", self.preload_n, 0.0, 5000.0, "N")
        check_range("cfl", self.cfl, 0.1, 20.0)
        check_range("max_saturation_change", self.max_saturation_change, 0.01, 1.0)
        check_injection_plan(self)


def fill_with_cement(model, tip_voxels, volume_ml: float, cement: str = "high", rate_ml_s: float = DEFAULT_RATE_ML_S,
                     start_time_s: float = DEFAULT_START_S, temperature_c: float = BODY_TEMPERATURE_C, cfl: float = DEFAULT_CFL,
                     max_saturation_change: float = DEFAULT_MAX_SATURATION_CHANGE,
                     syringe_temperature_c: float = ROOM_TEMPERATURE_C, **controls):
    """Inject ``volume_ml`` of cement into ``model`` (a Vertebra, treated or not) through ``tip_voxels``.

    The same call serves the kyphoplasty fill and a vertebroplasty reference on the untreated model: anisotropic
    permeability (transverse on axes 0 and 1, longitudinal on the height axis 2). ``controls``: pressure limit and
    stopping rules for :func:`flow.inject` (:func:`vertaug.procedures.vertebroplasty.injection_controls`); the
    model's extra-osseous veins (:func:`vertaug.procedures.injection.exit_veins`) unless ``exit_veins`` is given.
    The cement waits in the syringe at ``syringe_temperature_c`` until ``start_time_s`` and cures at ``temperature_c``
    in the bone (:func:`vertaug.procedures.injection.cement_viscosity_law`). Returns an InjectionResult.
    """
    controls.setdefault("exit_veins", exit_veins(model))
    m = model.materials
    kt, kl = m.permeability_transverse_m2, m.permeability_m2
    return inject(model.labels, model.spacing_m, model.phi, (kt, kt, kl), tip_voxels, rate_ml_s * 1e-6,
                  volume_ml * 1e-6, cement_viscosity_law(cement, temperature_c, start_time_s, syringe_temperature_c),
                  start_time_s=start_time_s, cfl=cfl,
                  max_saturation_change=max_saturation_change, **controls)


def _tips(vertebra, spec: Kyphoplasty, trajectories):
    if trajectories is None:
        from vertaug.model.trajectory import plan_trajectories

        trajectories = plan_trajectories(vertebra, approach=spec.approach)
    return trajectories


def _fractured(vertebra) -> bool:
    m = getattr(vertebra, "morphometry", None)
    return bool(m is not None and m.genant_grade is not None and m.genant_grade >= 1)


def _reduction_before_balloon(vertebra, spec: Kyphoplasty):
    """Postural reduction (prone on bolsters) and the fragment's resistance to the balloon (physics/reduction.py).
    Returns (the model after the postural reduction, resistance in N, notes)."""
    from vertaug.physics import reduction as rd

    dep = rd.fragment_of(vertebra, _fractured(vertebra))
    post = rd.postural_reduction(vertebra, dep, rd.endplate_area_m2(vertebra))
    res_n, why = rd.fragment_resistance_n(vertebra, dep, spec.fracture_mobility, spec.preload_n)
    if post.lift_vox > 0:
        vertebra = vertebra.with_labels(rd.lift_labels(vertebra, dep, post.lift_vox))
    return vertebra, res_n, [post.note, why]


def _cavity_metrics(res, saturation: np.ndarray, vvox_ml: float) -> dict:
    """Volume, connected regions and cement fill (voxels > half full) of the cavity (the membrane's space) and of the
    gap opened under the plate beyond the membrane (outcome.BalloonMetrics). Regions by scipy.ndimage.label: face
    connectivity (6), the connectivity of the cement's flow (flow.inject exchanges cement across voxel faces only);
    the 26-connected count says whether the balloons meet along an edge or a corner."""
    from scipy import ndimage

    full = np.asarray(saturation) > 0.5
    gap = res.fracture_gap if res.fracture_gap is not None else np.zeros_like(res.cavity)

    def pct(mask):
        return 100.0 * float(np.mean(full[mask])) if mask.any() else float("nan")

    regions = int(ndimage.label(res.cavity)[1])
    return {"balloon_space_ml": float(res.cavity.sum()) * vvox_ml,
            "balloon_space_regions_touching": int(ndimage.label(res.cavity, structure=np.ones((3, 3, 3)))[1]),
            "balloon_space_regions": regions, "cavity_regions": regions,
            "balloon_space_filled_pct": pct(res.cavity), "cavity_filled_pct": pct(res.cavity),
            "fracture_gap_ml": float(gap.sum()) * vvox_ml, "fracture_gap_filled_pct": pct(gap)}


def run_kyphoplasty(vertebra, spec: Kyphoplasty | None = None, trajectories=None) -> Outcome:
    """Simulate ``spec`` on ``vertebra``; returns an :class:`Outcome` (see the module docstring)."""
    spec = spec or Kyphoplasty()
    trajectories = _tips(vertebra, spec, trajectories)
    notes = []
    vertebra_prone, resistance_n, red_notes = _reduction_before_balloon(vertebra, spec)
    notes.extend(red_notes)
    res = bl.inflate(vertebra_prone, [t.tip_ijk for t in trajectories], volume_ml=spec.balloon_ml,
                     max_pressure_pa=spec.max_pressure_pa, device_max_pressure_pa=spec.device_max_pressure_pa,
                     balloon_max_ml=spec.balloon_max_ml, preload_n=resistance_n, balloon_device=spec.balloon_device,
                     axes=[t.direction for t in trajectories], fractured=_fractured(vertebra))
    notes.extend(res.notes)
    if res.stop_reason != "volume reached":
        notes.append(f"balloon stopped: {res.stop_reason} at {res.final_volume_ml:.2f} mL")
    treated = bl.treated_vertebra(vertebra_prone, res)
    vvox_ml = vertebra.voxel_volume_m3 * 1e6
    cavity_ml = float(res.cavity.sum()) * vvox_ml
    cement_ml = spec.cement_ml if spec.cement_ml is not None else spec.fill_ratio * cavity_ml
    tip_vox = np.concatenate([np.asarray(t.tip_voxels) for t in trajectories])
    mu = viscosity_law_of(spec)
    inj = fill_with_cement(treated, tip_vox, cement_ml, spec.cement, spec.rate_ml_s, spec.start_time_s,
                           spec.temperature_c, spec.cfl, spec.max_saturation_change,
                           syringe_temperature_c=spec.syringe_temperature_c, **injection_controls(treated, spec, mu))
    if inj.stop_reason != "volume reached":
        notes.append(f"fill stopped: {inj.stop_reason} after {inj.injected_m3[-1] * 1e6:.2f} mL")
    cement_fraction = (inj.saturation * treated.phi).astype(np.float32)
    if res.cavity.any():
        notes.append(f"cement in the cavity: {float(cement_fraction[res.cavity].sum()) * vvox_ml:.2f} of {cavity_ml:.2f} mL;"
                     f" {100.0 * float(np.mean(inj.saturation[res.cavity] > 0.5)):.1f} % of its voxels more than half full")
    fill_metrics, pressures = injection_metrics(inj, spec, mu, vertebra.body_volume_ml,
                                                vertebra.voxel_volume_m3 * 1e6)
    bone, dp_can, plunger = pressures["bone"], pressures["cannula"], pressures["plunger"]
    before = model_heights(vertebra)
    heights = height_change(vertebra, res.labels, before)
    if not np.isfinite(heights.restored_pct_of_lost):
        notes.append("less than one voxel of anterior height was lost: height restored % is not defined")
    balloon = BalloonMetrics(
        balloon_volume_ml=res.final_volume_ml, balloon_final_pressure_pa=res.final_pressure_pa,
        balloon_max_pressure_pa=float(res.pressure_pa.max()), cavity_volume_ml=cavity_ml,
        crushed_bone_tissue_ml=res.crushed_bone_m3 * 1e6, shell_mass_balance_error=res.mass_balance_error,
        endplate_lift_max_mm=float(res.lift_mm[-1]), deflation_recoil_mm=res.recoil_mm,
        inflated=height_change(vertebra, res.labels_inflated, before), **_cavity_metrics(res, inj.saturation, vvox_ml),
    )
    notes.append(f"balloon {res.final_volume_ml:.2f} mL = {res.crushed_space_ml:.2f} mL crushed + "
                 f"{res.final_volume_ml - res.crushed_space_ml:.2f} mL opened under the lifted plate and held by the "
                 f"membrane; the lift opened {res.opened_space_ml:.2f} mL in all")
    per = " + ".join(f"{v:.2f}" for v in res.per_balloon_ml)
    notes.append(f"cavity (the balloons' space) {cavity_ml:.2f} mL = {per} mL per balloon, {balloon.cavity_regions} "
                 f"face-connected region(s) ({balloon.balloon_space_regions_touching} counting edge/corner contact), "
                 f"{balloon.cavity_filled_pct:.1f} % of it more than half full; gap under the plate beyond the membrane "
                 f"{balloon.fracture_gap_ml:.2f} mL, {balloon.fracture_gap_filled_pct:.1f} %")
    series = {
        "balloon_volume_ml": res.volume_ml, "balloon_pressure_pa": res.pressure_pa, "balloon_lift_mm": res.lift_mm,
        "balloon_contact_area_mm2": res.contact_area_mm2,
        "t_s": inj.t_s, "injected_ml": inj.injected_m3 * 1e6, "in_bone_ml": inj.in_bone_m3 * 1e6,
        "tip_pressure_pa": bone, "cannula_pressure_drop_pa": dp_can, "plunger_pressure_pa": plunger,
        **{f"leaked_ml_{r}": inj.leaked_m3[r] * 1e6 for r in ROUTES},
    }
    fields = {"balloon_cavity": res.cavity, "balloon_membrane": res.membrane, "compacted_shell": res.shell, "cement_saturation": inj.saturation,
              "fracture_gap": res.fracture_gap}
    inputs = asdict(spec)
    inputs["n_balloons"] = len(trajectories)
    inputs["tips_ijk"] = [tuple(float(c) for c in t.tip_ijk) for t in trajectories]
    return make_outcome("kyphoplasty", cement_fraction, inj.arrival_time_s, series, fill_metrics, heights, treated,
                        model_before=vertebra, balloon=balloon, fields=fields, inputs=inputs, notes=notes)
