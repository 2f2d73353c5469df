"""Cohort tasks that simulate the procedures: vertebroplasty (VP) and kyphoplasty (KP) of one case under one sample.

Plug them into :func:`vertaug.cohort.run.run_cohort` (``task_fn=procedures_task``) or the CLI
(``vertaug cohort MANIFEST --task vertaug.cohort.tasks:procedures_task``). Each returns two rows, ``procedure='VP'``
and ``procedure='KP'``, computed on the same pre-treatment model (:func:`vertaug.cohort.run.case_vertebra`) with the
same cannula trajectories (bipedicular, planned once).

Sampled inputs (:mod:`vertaug.cohort.sampling`) -> model and plans:

* materials: the material maps are rebuilt from the model's HU with the sampled calibration ``BMD = slope * HU``
  (``bmd_slope_mg_cm3_per_hu``; intercept 0), so BV/TV, k, E and yield all follow it; then both permeability fields
  are scaled in the trabecular bone (label 1), ``k_long' = s k_long(BV/TV)``, ``k_trans' = s k_trans(BV/TV)`` with
  ``s = permeability_scale`` (the sampled scatter is that of measured trabecular permeability, Baroud 2004); the
  open channels (veins, cleft, defect: geometric k of the voxel width) are not scaled;
* cement: preset ``low_viscosity`` -> ``'low'``, ``high_viscosity`` -> ``'high'`` (physics/rheology.py), mixed
  ``60 * cement_start_time_min`` s before the injection starts, injected at ``rate_ml_s``;
* VP: :class:`~vertaug.procedures.vertebroplasty.Vertebroplasty` of ``volume_ml``;
* KP: :class:`~vertaug.procedures.kyphoplasty.Kyphoplasty`, one balloon per cannula of ``volume_ml / n_cannulas``
  each (volume-controlled, clipped to [0.05, balloon_max_ml]), then ``cement_ml = volume_ml``: the two procedures
  inject the same cement volume.

Row columns (scalars, units in the names): ``injected_ml``, ``leaked_ml``, ``leaked_ml_B``/``_S``/``_C``/``_D``,
``leak_fraction``, ``fill_fraction_of_body``, ``max_injection_pressure_pa`` (plunger), ``max_injection_pressure_bone_pa``
(bone at the cannula tip, gauge), ``injection_time_s``, ``stop_reason`` (the clinical rule that ended the injection:
planned volume, cement in the posterior quarter, leak visible on fluoroscopy, injector stalled), ``leak_on_ct`` and
``leak_on_fluoroscopy`` (bool: the leak above each modality's detection limit), ``height_restored_mm`` (VP: 0.0, the cement moves no
endplate in this model), ``height_anterior_mm`` and ``wedge_angle_deg`` after treatment (both procedures measured by
:func:`vertaug.model.heights.height_change`), ``balloon_ml`` and ``balloon_final_pressure_pa`` (NaN for VP),
``n_cannulas``, ``procedure_s`` (wall time of this procedure's simulation, s), ``permeability_scale_applied`` (bool:
whether the model the cement was injected into kept the sampled trabecular permeability; see below) and ``note``
(the outcome's notes, at most ``NOTE_CHARS`` characters). :func:`compare_task` adds ``peak_temperature_c``,
``peak_temperature_canal_c``, ``necrosis_volume_ml``, ``peak_time_after_mixing_min`` and ``exotherm_s`` (exotherm,
procedures/exotherm.py),
``stiffness_n_per_mm``, ``strength_n`` of the treated level, ``pre_stiffness_n_per_mm``, ``pre_strength_n`` of the
untreated level under the same sampled materials and ``mechanics_s`` (wall time of the three FE solves together; voxel
FE, procedures/stiffness.py).

The permeability scale is part of the model's :class:`~vertaug.model.materials.MaterialMaps`
(``permeability_scale``), so the treated KP model (rebuilt from HU by ``balloon.treated_vertebra``) keeps it;
``permeability_scale_applied`` checks that each treated model's materials carry the sampled scale.

A procedure that fails raises (nothing is caught here): the runner records the task as one failed row and goes on.

Reproducibility: pyamg draws the start vectors of its spectral-radius estimates from numpy's global random state
(pyamg.util.linalg.approximate_spectral_radius), which moved the leaked volume in the 12th digit between two runs of
the same sample. The study chain (:mod:`vertaug.study`) runs each procedure under numpy's global state seeded with
``GLOBAL_RNG_SEED`` and restores the caller's state afterwards, so a sample gives bit-identical rows whatever ran
before it on the worker. The tasks call that chain (``run_study``); they only sample the inputs and flatten the rows.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..errors import ParameterError
from ..physics.flow import ROUTES

__all__ = ["CEMENT_OF_PRESET", "NOTE_CHARS", "compare_task", "procedure_specs", "procedures_task", "sampled_vertebra"]

#: Sampled cement preset -> name of the rheology preset.
CEMENT_OF_PRESET = {"low_viscosity": "low", "high_viscosity": "high"}
#: Longest ``note`` kept in a row (characters).
NOTE_CHARS = 300


def sampled_vertebra(vertebra, sample: dict):
    """``vertebra`` with material maps rebuilt for the sampled BMD slope and the trabecular permeabilities scaled.

    ``permeability_scale`` multiplies both fields (``permeability_m2``, ``permeability_transverse_m2``) where they come
    from the BV/TV law (label 1, trabecular bone): the scatter it samples is that of measured trabecular permeability
    (Baroud 2004). The open channels (veins 5, 6; cleft/defect 7) keep their geometric values (Poiseuille tube, cubic
    law of the voxel width) and impermeable labels stay at 0.
    """
    from ..model.materials import Calibration, material_maps

    scale = float(sample["permeability_scale"])
    if not (math.isfinite(scale) and scale > 0):
        raise ParameterError(f"Parameter permeability_scale={scale!r} is not a positive number.",
                             "give a permeability factor > 0 (the cohort samples 0.47-2.11).")
    old = vertebra.materials
    cal = Calibration(0.0, float(sample["bmd_slope_mg_cm3_per_hu"]), source="cohort sample")
    mats = material_maps(vertebra.hu, vertebra.labels, calibration=cal, modulus_law=old.modulus_law,
                         density_law=old.density_law, voxel_size_m=vertebra.spacing_m[0], permeability_scale=scale,
                         vein_lumen=old.vein_lumen)
    return replace(vertebra, materials=mats)


def procedure_specs(sample: dict, n_cannulas: int = 2):
    """``(Vertebroplasty, Kyphoplasty)`` plans of one sample (bipedicular; see the module docstring)."""
    from ..physics.balloon import BALLOON_MAX_ML
    from ..procedures.kyphoplasty import Kyphoplasty
    from ..procedures.vertebroplasty import Vertebroplasty

    preset = sample["cement_preset"]
    if preset not in CEMENT_OF_PRESET:
        raise ParameterError(f"Parameter cement_preset={preset!r} is unknown.",
                             f"use one of {sorted(CEMENT_OF_PRESET)}.")
    cement = CEMENT_OF_PRESET[preset]
    volume = float(sample["volume_ml"])
    common = {"rate_ml_s": float(sample["rate_ml_s"]), "start_time_s": 60.0 * float(sample["cement_start_time_min"]),
              "cement": cement, "approach": "bipedicular"}
    balloon = float(np.clip(volume / max(int(n_cannulas), 1), 0.05, BALLOON_MAX_ML))
    return Vertebroplasty(volume_ml=volume, **common), Kyphoplasty(balloon_ml=balloon, cement_ml=volume, **common)


def _plain(v):
    """numpy scalars -> Python int/float (rows hold plain scalars)."""
    return v.item() if isinstance(v, (np.integer, np.floating, np.bool_)) else v


def _clip_note(note: str) -> str:
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 3] + "..."


#: the stage timer of each procedure's own simulation (vertaug.study.run_procedure)
_PROCEDURE_STAGE = {"VP": "vertebroplasty", "KP": "kyphoplasty"}


def _row(run, permeability_scale: float) -> dict:
    """One row of a procedure run (columns in the module docstring)."""
    out, name = run.outcome, run.name
    inj = out.injection
    kept = out.model_after.materials.permeability_scale == permeability_scale
    lost = None if kept else ("permeability_scale not applied: the treated model's trabecular permeability differs "
                              "from the sample's")
    row = {
        "procedure": name,
        "injected_ml": inj.injected_ml,
        "leaked_ml": inj.leaked_ml,
        **{f"leaked_ml_{r}": float(inj.leaked_ml_by_route.get(r, 0.0)) for r in ROUTES},
        "leak_fraction": inj.leak_fraction,
        "fill_fraction_of_body": inj.fill_fraction_of_body,
        "max_injection_pressure_pa": inj.max_injection_pressure_pa,
        "max_injection_pressure_bone_pa": inj.max_injection_pressure_bone_pa,
        "injection_time_s": inj.injection_time_s,
        "stop_reason": inj.stop_reason,
        "leak_on_ct": inj.leak_on_ct,
        "leak_on_fluoroscopy": inj.leak_on_fluoroscopy,
        "height_restored_mm": out.heights.restored_mm,
        "height_anterior_mm": out.heights.after.anterior_mm,
        "wedge_angle_deg": out.heights.after.wedge_angle_deg,
        "balloon_ml": out.inputs.get("balloon_ml") if name == "KP" else math.nan,
        "balloon_final_pressure_pa": out.balloon.balloon_final_pressure_pa if out.balloon is not None else math.nan,
        "n_cannulas": len(out.inputs.get("tips_ijk", ())),
        "procedure_s": run.timings_s[_PROCEDURE_STAGE[name]],
        "permeability_scale_applied": kept,
        "note": _clip_note("; ".join(filter(None, (lost, *out.notes, *run.notes)))),
    }
    if run.exotherm is not None:
        ex = run.exotherm.metrics
        row.update({"peak_temperature_c": ex.peak_temperature_c, "peak_temperature_canal_c": ex.peak_temperature_canal_c,
                    "necrosis_volume_ml": ex.necrosis_volume_ml,
                    "peak_time_after_mixing_min": ex.peak_time_after_mixing_min,
                    "exotherm_s": run.timings_s[f"exotherm_{name}"]})
    return row


def _mechanics_columns(study) -> dict:
    """FE columns of both rows: the treated state's and the untreated one's, and the three solves' wall time."""
    pre = study.pre_mechanics
    fe_s = sum(t for k, t in study.timings_s.items() if k.startswith("mechanics_"))
    nan = math.nan
    cols = {}
    for name, run in study.runs.items():
        st = run.mechanics
        cols[name] = {"stiffness_n_per_mm": st.stiffness_n_per_mm if st else nan,
                      "strength_n": st.strength_n if st else nan,
                      "pre_stiffness_n_per_mm": pre.stiffness_n_per_mm if pre else nan,
                      "pre_strength_n": pre.strength_n if pre else nan, "mechanics_s": fe_s}
    return cols


def _run_procedures(case, sample: dict, thermal: bool = False, mechanics: bool = False) -> list[dict]:
    """VP and KP rows of one (case, sample) through the study chain; ``thermal`` adds the exotherm, ``mechanics``
    the FE stiffness before and after."""
    from ..model.trajectory import plan_trajectories
    from ..study import run_study
    from .run import case_vertebra

    v = sampled_vertebra(case_vertebra(case), sample)
    trajectories = plan_trajectories(v, approach="bipedicular")
    vp_spec, kp_spec = procedure_specs(sample, len(trajectories))
    study = run_study(v, vp_spec, kp_spec, thermal=thermal, mechanics=mechanics, workers=1,
                      trajectories={"bipedicular": trajectories})
    scale = v.materials.permeability_scale
    rows = {name: _row(run, scale) for name, run in study.runs.items()}
    if mechanics:
        for name, cols in _mechanics_columns(study).items():
            rows[name].update(cols)
    return [{k: _plain(v) for k, v in rows[name].items()} for name in ("VP", "KP")]


def procedures_task(case, sample: dict) -> list[dict]:
    """VP and KP of one case under one sample: two rows (columns in the module docstring)."""
    return _run_procedures(case, sample)


def compare_task(case, sample: dict) -> list[dict]:
    """:func:`procedures_task` plus the cement exotherm and the FE stiffness/strength before and after."""
    return _run_procedures(case, sample, thermal=True, mechanics=True)
