"""Run a trial: every patient of a sampled population through every arm, as tasks of the cohort runner on Dask.

Each patient is one task of :func:`vertaug.cohort.run.run_cohort` (a :class:`~vertaug.cohort.manifest.Case` named by
the patient id, one sample): resumable Parquet parts, a failed patient recorded with its error while the trial goes
on, a progress bar, a local cluster by default or ``scheduler='tcp://host:8786'``. The task (:func:`trial_task`)
builds the patient's fractured level and runs the arms on it through the study chain:

1. the source level (a CT level or a phantom); a CT level tilted beyond the balloon model's limit (the bundled L5,
   28.6 deg) is first turned upright on a grid of the model's spacing (:mod:`vertaug.trial.align`); the HU of the
   level's vertebra label are scaled so that its median trabecular (body) HU becomes the patient's ``trabecular_hu``
   (see :func:`scale_level_hu`);
2. the virtual fracture (``anatomy.fracture.fracture_level``: type, grade, cleft, endplate and cortical breaks, the
   patient's fracture-line seed) and the model (``vertebra_from_ct(..., fracture_zone=f.zone)``); a phantom is built
   fractured (``make_phantom(fracture=, grade=, cleft=, cortical_defect=, trabecular_hu=)``);
3. ``run_study(model, VP, KP)`` on one bipedicular trajectory plan, then any further arm with ``run_procedure`` on the
   same plan: a paired design.

One row per patient and arm (``procedure`` = the arm name); columns in docs/trial.md. The cohort runner's sampled
inputs are pinned (``Case.fixed``) to the VP arm's rate, start time and cement and to the nominal calibration
(``bmd_slope_mg_cm3_per_hu = 1``, ``permeability_scale = 1``), so those columns state what was run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TrialSpec", "make_cases", "run_trial", "scale_level_hu", "trial_task"]

#: entries kept per worker process: the read volumes of each CT file and each source level's (turned) volumes; the
#: shipped population has 2 files and 6 CT levels, a few MB each
CT_CACHE_SIZE = 16
_CT_CACHE: OrderedDict = OrderedDict()


@dataclass(frozen=True, eq=False)
class TrialSpec:
    """What every task needs: the patients, the arms, the model spacing. Its repr is a digest (the runner stores it in
    ``cohort.json`` and refuses to resume a folder with another population)."""

    patients: tuple  # of population.Patient
    arms: tuple  # of (name, arm dict)
    spacing_mm: float
    sources: tuple  # of population.Source

    @functools.cached_property
    def digest(self) -> str:
        blob = json.dumps([[p.to_dict() for p in self.patients], self.arms, self.spacing_mm,
                           [s.__dict__ for s in self.sources]], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"TrialSpec(patients={len(self.patients)}, arms={[a for a, _ in self.arms]}, sha256={self.digest})"

    def patient(self, patient_id: str):
        return next(p for p in self.patients if p.patient_id == patient_id)

    def source(self, source_id: str):
        return next(s for s in self.sources if s.source_id == source_id)


def _cached(key, make):
    if key not in _CT_CACHE:
        _CT_CACHE[key] = make()
        while len(_CT_CACHE) > CT_CACHE_SIZE:
            _CT_CACHE.popitem(last=False)
    _CT_CACHE.move_to_end(key)
    return _CT_CACHE[key]


def _load(src):
    """(ct, seg, body) Volumes of a CT source, cached per worker process."""
    from ..anatomy.io import load_ct, load_labels

    def read():
        ct = load_ct(src.ct)
        seg = load_labels(src.seg, reference=ct, what="segmentation")
        body = load_labels(src.body, reference=ct, what="vertebrae_body map") if src.body else None
        return ct, seg, body

    return _cached((src.ct, src.seg, src.body), read)


def source_volumes(src, spacing_mm: float):
    """(ct, seg, body, tilt_deg, turned) of a CT source's level, turned upright where the balloon model needs it
    (:func:`vertaug.trial.align.align_level`), cached per worker process."""
    from .align import align_level

    return _cached((src.ct, src.seg, src.body, src.level, spacing_mm),
                   lambda: align_level(*_load(src), src.level, src.numbering, spacing_mm))


def scale_level_hu(ct, seg, body, level: str, numbering: str, target_hu: float):
    """``(ct', factor)``: the CT with the HU of ``level``'s vertebra label multiplied by ``target / median``.

    ``median`` is the median HU of the level's body (the ``vertebrae_body`` map's body label inside the level, or the
    whole label without a body map). Bone HU is proportional to the mineral density (QCT calibration ``BMD = slope x HU``
    with an intercept near 0, ``model.materials``), so the scaling multiplies every voxel's BMD by one factor: the
    level keeps its own trabecular pattern and shell, with less (or more) mineral, as a uniform bone loss. Neighbours,
    discs and soft tissue are untouched.
    """
    from dataclasses import replace

    from ..anatomy.levels import BODY_LABEL, label_table

    vert = np.asarray(seg.data) == label_table(numbering)[level]
    core = vert & (np.asarray(body.data) == BODY_LABEL) if body is not None else vert
    measured = float(np.median(np.asarray(ct.data)[core if core.any() else vert]))
    if not measured > 1.0:
        from ..errors import ParameterError

        raise ParameterError(f"Level {level} has a median body HU of {measured:.0f}; it cannot be scaled to "
                             f"{target_hu:.0f} HU.", "use a source level whose body is bone (HU > 1).")
    factor = target_hu / measured
    data = np.asarray(ct.data, np.float32).copy()
    data[vert] *= factor
    return replace(ct, data=data), factor


def _ct_model(spec: TrialSpec, patient, src):
    from ..anatomy.fracture import fracture_level
    from ..model.vertebra import vertebra_from_ct

    ct, seg, body, tilt, turned = source_volumes(src, spec.spacing_mm)
    ct2, factor = scale_level_hu(ct, seg, body, src.level, src.numbering, patient.trabecular_hu)
    cortical = None if patient.cortical_break == "none" else patient.cortical_break
    f = fracture_level(ct2, seg, src.level, patient.fracture_type, patient.genant_grade, cleft=patient.cleft,
                       endplate_break=patient.endplate_break, cortical_break=cortical, seed=patient.fracture_seed,
                       body=body, numbering=src.numbering)
    v = vertebra_from_ct(f.ct, f.seg, src.level, body=f.body, numbering=src.numbering, spacing_mm=spec.spacing_mm,
                         fracture_zone=f.zone)
    return v, {"hu_scale": factor, "fracture_deformity": float(f.deformity_measured), "level_tilt_deg": tilt,
               "turned_upright": turned}


def _phantom_model(spec: TrialSpec, patient, src):
    from ..anatomy.phantom import make_phantom
    from ..model.vertebra import vertebra_from_phantom

    ph = make_phantom(level=src.level, fracture=patient.fracture_type, grade=patient.genant_grade, cleft=patient.cleft,
                      cortical_defect=patient.cortical_break != "none", trabecular_hu=patient.trabecular_hu,
                      spacing_mm=spec.spacing_mm, seed=patient.fracture_seed)
    return vertebra_from_phantom(ph), {"hu_scale": math.nan, "fracture_deformity": ph.spec.deformity_fraction,
                                       "level_tilt_deg": 0.0, "turned_upright": False}


def trial_task(spec: TrialSpec, case, sample: dict) -> list[dict]:
    """One patient through every arm: one row per arm (a module-level function: it travels to Dask workers)."""
    from ..cohort.tasks import outcome_row
    from ..model.trajectory import plan_trajectories
    from ..study import run_procedure, run_study
    from .arms import arm_plan

    patient = spec.patient(case.case_id)
    src = spec.source(patient.source_id)
    v, extra = (_phantom_model if src.phantom else _ct_model)(spec, patient, src)
    tr = plan_trajectories(v, approach="bipedicular")
    body_ml = float(v.body_volume_ml)
    arms = dict(spec.arms)
    plans = {name: arm_plan(arm, body_ml, len(tr)) for name, arm in arms.items()}
    study = run_study(v, plans["VP"], plans["KP"], thermal=False, mechanics=False, trajectories={"bipedicular": tr})
    runs = {"VP": study.vp, "KP": study.kp}
    for name in arms:
        if name not in runs:
            runs[name] = run_procedure(v, plans[name], tr, thermal=False, mechanics=False)
    base = {**{k: val for k, val in patient.to_dict().items() if k != "patient_id"}, **extra, "body_volume_ml": body_ml}
    return [{**outcome_row(runs[name], name), **base} for name in arms]


def make_cases(spec: TrialSpec) -> list:
    """One cohort Case per patient (the cohort runner's inputs pinned to the VP arm's plan, see module docstring)."""
    from ..cohort.manifest import Case

    vp = dict(spec.arms)["VP"]
    fixed = {"bmd_slope_mg_cm3_per_hu": 1.0, "permeability_scale": 1.0,
             "cement_preset": {"low": "low_viscosity", "high": "high_viscosity"}[vp["cement"]],
             "cement_start_time_min": vp["start_time_s"] / 60.0, "volume_ml": math.nan, "rate_ml_s": vp["rate_ml_s"]}
    cases = []
    for p in spec.patients:
        src = spec.source(p.source_id)
        cases.append(Case(case_id=p.patient_id, level=src.level, ct=src.ct, seg=src.seg, body=src.body,
                          numbering=src.numbering, phantom={"level": src.level} if src.phantom else None,
                          spacing_mm=spec.spacing_mm, fixed=fixed))
    return cases


def _chosen_arms(pop, names: list[str] | None) -> dict:
    from .file_checks import PopulationError

    if not names:
        return dict(pop.arms)
    unknown = sorted(set(names) - set(pop.arms))
    if unknown:
        raise PopulationError(f"Arm {unknown[0]!r} is not in the population file '{pop.path}' "
                              f"(arms: {', '.join(pop.arms)}).", "give --arm with one of those names, or add "
                              f"an arms.{unknown[0]} table to the file.")
    return {k: v for k, v in pop.arms.items() if k in ("VP", "KP") or k in names}


def run_trial(out_dir: str | Path, population=None, patients: int | None = None, seed: int | None = None,
              scheduler: str | None = None, n_workers: int | None = None, client=None, progress: bool = True,
              console=None, arms: list[str] | None = None):
    """Sample the population, run every patient and arm, write ``results.parquet`` and the trial summary.

    Returns ``(CohortRun, summary dict)``. ``population``: a path or a :class:`Population` (default: the shipped one).
    ``arms``: the arms to run (VP and KP always run; default: every arm of the population).
    """
    from ..cohort.run import run_cohort
    from .population import Population, load_population, sample_patients
    from .statistics import write_summary

    pop = population if isinstance(population, Population) else load_population(population)
    n = pop.patients if patients is None else int(patients)
    seed = pop.seed if seed is None else int(seed)
    people = sample_patients(pop, n, seed)
    spec = TrialSpec(tuple(people), tuple(_chosen_arms(pop, arms).items()), pop.spacing_mm, pop.sources)
    run = run_cohort(make_cases(spec), out_dir, samples=1, seed=seed, task_fn=functools.partial(trial_task, spec),
                     scheduler=scheduler, n_workers=n_workers, client=client, progress=progress, console=console)
    summary = write_summary(Path(out_dir), pop, spec, run)
    return run, summary
