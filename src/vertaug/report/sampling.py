"""Parameter ranges of the report: the study chain over N samples of the uncertain material, rheology and calibration
inputs, and the median and 5-95 % range of every simulated number and of the difference KP - VP.

Inputs sampled (the cohort's Latin hypercube sampler, :mod:`vertaug.cohort.sampling`, with the cohort's ranges and
their sources; the plan's volume, rate and cement stay as given):

* material: ``permeability_scale``, log-uniform [0.474, 2.109] (Baroud 2004 scatter of lumbar permeability, exp(+-2
  sigma_ln)); both trabecular permeabilities times the factor;
* rheology: ``cement_start_time_min``, uniform [2, 8] min (when the cement reaches the cannula after mixing: it sets
  the viscosity at the start of the injection; Nicholas 2007's shortest curing time at 25 C, 8.7 min, bounds it, the
  cement waiting in the syringe at room temperature until then);
* calibration: ``bmd_slope_mg_cm3_per_hu``, uniform [0.7, 1.3] (HU -> BMD slope at 120 kVp around the nominal 1.0);
  BV/TV, permeability, E and yield all follow it.

Nominal = permeability factor 1, the plans' own start time, slope 1.0 (the model the report's numbers come from).

Cost and transfer. One sample is one full chain (VP, KP, exotherms, FE states). To keep ``vertaug demo`` within its
time budget the samples run on a coarser model (``SAMPLE_SPACING_MM``, 8x fewer voxels than the 1 mm model) together
with one nominal run at that spacing, all through the report's own cannula paths (carried onto the coarse grid), and
each sample's change is carried over to the report's own value ``y`` as a
ratio of the coarse sample ``x_s`` to the coarse nominal ``x_0`` (a sensitivity measured on the coarse model)::

    y_s = y * x_s / x_0                       (|x_0| above the row's detection limit or 1e-9)
    y_s = 37 + (y - 37) (x_s - 37) / (x_0 - 37)  (temperatures: the rise above body temperature, x_0 - 37 > 0.5 C)
    y_s = y + (x_s - x_0)                     (otherwise: a value that is zero on the coarse nominal model)

and the row shows the median and the 5 and 95 % quantiles (numpy's linear interpolation) of ``y_s``; the difference
KP - VP is taken per sample (paired: the same sampled inputs for both) before its quantiles. With the sample spacing
equal to the model spacing (``sample_spacing_mm``), nothing is transferred (``x_0`` is the report's own run).
The transfer assumes that a parameter moves a number by the same factor on both grids: where the two grids give
qualitatively different answers (a stop rule met at another volume, a lift on one grid and none on the other) it can
be wrong, and the coarse nominal values are written to comparison.json (``parameter_ranges.nominal``) to check.
With the default N = 4 the 5-95 % quantiles lie close to the smallest and largest sample: a first look, not a
converged range; ``--samples`` raises N.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..cohort.sampling import UNCERTAIN_INPUTS, case_samples
from ..constants import BODY_TEMPERATURE_C

__all__ = ["DEFAULT_SAMPLES", "SAMPLED_INPUTS", "SAMPLE_SPACING_MM", "ParameterRanges", "carried_trajectories",
           "PendingSamples", "nominal_sample", "run_samples", "sampled_model", "sampled_plans", "submit_samples",
           "transfer"]

#: Parameter samples of a report by default: small enough that `vertaug demo` is not doubled (docs/report.md).
DEFAULT_SAMPLES = 4
#: Model spacing of the sampled chains (mm); the report's own spacing when that is coarser.
SAMPLE_SPACING_MM = 2.0
#: Names of the cohort's uncertain inputs sampled for a report (material, rheology, calibration).
_NAMES = ("permeability_scale", "cement_start_time_min", "bmd_slope_mg_cm3_per_hu")
SAMPLED_INPUTS = tuple(p for p in UNCERTAIN_INPUTS if p.name in _NAMES)
#: Quantiles shown (%).
QUANTILES = (5.0, 50.0, 95.0)
_TEMPERATURE_KEYS = ("peak_temperature_c", "peak_temperature_canal_c")


@dataclass(frozen=True)
class ParameterRanges:
    """The sampled chains of one report: inputs, coarse values per procedure and metric, and how they were run."""

    n_samples: int
    spacing_mm: float
    samples: tuple[dict, ...]
    nominal: dict  # {"VP": {metric: value}, "KP": {...}}: the nominal run at spacing_mm
    values: dict  # {"VP": {metric: (value of each sample)}, "KP": {...}}
    wall_s: float
    transferred: bool  # True: spacing_mm differs from the report's model, values carried over by ratio
    notes: tuple[str, ...] = field(default=())

    def quantiles(self, key: str, vp: float | None, kp: float | None, limit: float | None = None) -> dict | None:
        """{"vp": (p5, p50, p95), "kp": ..., "diff": ...} of the report's values ``vp``/``kp`` under the samples
        (None where a procedure has no value or no sample has the metric)."""
        out = {}
        ys = {}
        for tag, y in (("VP", vp), ("KP", kp)):
            xs = self.values.get(tag, {}).get(key)
            x0 = self.nominal.get(tag, {}).get(key)
            if y is None or xs is None or x0 is None or not all(math.isfinite(x) for x in xs):
                continue
            ys[tag] = np.array([transfer(key, y, x0, x, limit) if self.transferred else x for x in xs])
            if limit is not None:
                ys[tag] = np.where(np.abs(ys[tag]) < limit, 0.0, ys[tag])
            out[tag.lower()] = tuple(float(q) for q in np.percentile(ys[tag], QUANTILES))
        if not out:
            return None
        if len(ys) == 2:
            out["diff"] = tuple(float(q) for q in np.percentile(ys["KP"] - ys["VP"], QUANTILES))
        return out

    def to_dict(self) -> dict:
        return {"n_samples": self.n_samples, "spacing_mm": self.spacing_mm, "transferred": self.transferred,
                "quantiles_pct": list(QUANTILES),
                "inputs": [{"name": p.name, "kind": p.kind, "low": p.low, "high": p.high, "source": p.source}
                           for p in SAMPLED_INPUTS],
                "samples": list(self.samples), "nominal": self.nominal,
                "values": {t: {k: list(v) for k, v in m.items()} for t, m in self.values.items()},
                "notes": list(self.notes)}


def transfer(key: str, y: float, x0: float, x: float, limit: float | None = None) -> float:
    """The report's value ``y`` under one sample: the coarse change ``x / x0`` carried over (module docstring)."""
    if key in _TEMPERATURE_KEYS and x0 - BODY_TEMPERATURE_C > 0.5:
        return BODY_TEMPERATURE_C + (y - BODY_TEMPERATURE_C) * (x - BODY_TEMPERATURE_C) / (x0 - BODY_TEMPERATURE_C)
    if abs(x0) > max(limit or 0.0, 1e-9):
        return y * x / x0
    return y + (x - x0)


def nominal_sample(vp, kp) -> dict:
    """The nominal inputs (permeability factor 1, slope 1.0, the plans' start time; ``sample`` = -1)."""
    return {"sample": -1, "permeability_scale": 1.0, "bmd_slope_mg_cm3_per_hu": 1.0,
            "cement_start_time_min": None, "vp_start_time_s": vp.start_time_s, "kp_start_time_s": kp.start_time_s}


def sampled_model(vertebra, sample: dict):
    """``vertebra`` with its materials rebuilt for the sampled calibration slope and permeability factor; the
    fracture zone and the veins of the nominal model are kept (unlike cohort.tasks.sampled_vertebra)."""
    from dataclasses import replace

    from ..model.materials import Calibration, material_maps

    old = vertebra.materials
    cal = Calibration(old.calibration.intercept_mg_cm3, float(sample["bmd_slope_mg_cm3_per_hu"]),
                      source="report parameter sample")
    mats = material_maps(vertebra.hu, vertebra.labels, calibration=cal, modulus_law=old.modulus_law,
                         density_law=old.density_law, voxel_size_m=vertebra.spacing_m[0],
                         permeability_scale=float(sample["permeability_scale"]), fracture_zone=old.fracture_zone,
                         vein_lumen=old.vein_lumen)
    return replace(vertebra, materials=mats)


def sampled_plans(vp, kp, sample: dict):
    """The plans with the sampled cement start time (the nominal sample keeps each plan's own)."""
    from dataclasses import replace

    t = sample.get("cement_start_time_min")
    if t is None:
        return vp, kp
    return replace(vp, start_time_s=60.0 * float(t)), replace(kp, start_time_s=60.0 * float(t))


def carried_trajectories(trajectories: dict, fine, coarse) -> dict:
    """The report's cannula paths ({approach: [Trajectory]} on the model ``fine``) on the model ``coarse``: entry and
    tip through the two grids' affines, tip voxels found again on ``coarse`` (the same rule as the planner's). The
    samples inject where the report's procedures did (the pedicle search on a coarse model can miss a pedicle)."""
    from dataclasses import replace

    from ..model.trajectory import _tip_voxels

    m = np.linalg.inv(coarse.affine_mm) @ fine.affine_mm
    s_mm = float(coarse.spacing_m[0]) * 1e3
    body = np.asarray(coarse.body_mask)
    out = {}
    for approach, paths in trajectories.items():
        out[approach] = []
        for t in paths:
            entry, tip = (m[:3, :3] @ np.asarray(p, float) + m[:3, 3] for p in (t.entry_ijk, t.tip_ijk))
            vox = _tip_voxels(body, tip, 0.5 * t.gauge_mm / s_mm)
            if len(vox) == 0:  # the tip falls just outside the coarser body: its nearest body voxel
                inside = np.argwhere(body)
                vox = inside[[int(np.argmin(np.linalg.norm(inside - tip, axis=1)))]].astype(np.int64)
            out[approach].append(replace(t, entry_ijk=tuple(float(x) for x in entry),
                                         tip_ijk=tuple(float(x) for x in tip), tip_voxels=vox))
    return out


def _one(args) -> tuple[str, dict]:
    """One procedure chain of one sample (top level: runs in a worker process): (name, its rows' metrics). The
    untreated FE state is not solved (no row uses it)."""
    from ..model.heights import keep_heights
    from ..study import run_procedure
    from .compare import procedure_metrics

    model, plan, sample, thermal, mechanics, trajectories, kept = args
    keep_heights(kept)  # the untreated heights, measured once in the caller (the same for every sample)
    run = run_procedure(sampled_model(model, sample), plan, trajectories[plan.approach], thermal, mechanics)
    return run.name, procedure_metrics(run)


def run_samples(model, vp, kp, n: int, seed: int = 0, thermal: bool = True, mechanics: bool = True,
                workers: int = 1, nominal: dict | None = None, progress=None,
                trajectories: dict | None = None) -> ParameterRanges:
    """``n`` sampled chains of ``model`` (a coarse model, or the report's own when ``nominal`` is given: its
    metrics {"VP": ..., "KP": ...}, then no nominal run is made and nothing is transferred); ``trajectories``:
    the cannula paths on ``model`` ({approach: paths}; planned here when None). ``workers`` >= 2: the chains run
    in a :func:`vertaug.study.worker_pool` of that many processes made here (:func:`submit_samples` queues them on the caller's pool)."""
    from ..study import worker_pool

    jobs = 2 * (n + (nominal is None))
    with worker_pool(min(workers, jobs) if workers >= 2 and jobs > 1 else 0) as pool:
        pending = submit_samples(model, vp, kp, n, seed, thermal, mechanics, pool, nominal is None, progress,
                                 trajectories)
        return pending.result(nominal)


@dataclass(eq=False)
class PendingSamples:
    """Sample chains queued by :func:`submit_samples`: ``result()`` waits for them (or runs them here, without a
    pool) and returns the :class:`ParameterRanges`."""

    model: object
    n: int
    samples: tuple
    todo: list  # the sampled inputs of each run, the nominal first when it is run
    jobs: list  # (model, plan, sample, thermal, mechanics, trajectories, kept heights) per chain, two per todo entry
    handle: object  # multiprocessing AsyncResult, or None: run in this process by result()
    t0: float

    def result(self, nominal: dict | None = None) -> ParameterRanges:
        """The ranges; ``nominal``: the report's own metrics when no nominal run was queued (nothing transferred)."""
        if self.handle is not None:
            results = [None] * len(self.jobs)
            for i, got in zip(_longest_first(self.jobs), self.handle.get()):
                results[i] = got
        else:
            results = [_one(j) for j in self.jobs]
        by_sample = [dict(results[2 * i: 2 * i + 2]) for i in range(len(self.todo))]
        if len(self.todo) > len(self.samples):
            nominal, by_sample = by_sample[0], by_sample[1:]
        values = {tag: {k: tuple(float(r[tag].get(k, math.nan)) for r in by_sample) for k in nominal[tag]}
                  for tag in ("VP", "KP")}
        return ParameterRanges(int(self.n), float(self.model.spacing_m[0]) * 1e3, tuple(self.samples),
                               {t: dict(m) for t, m in nominal.items()}, values, time.perf_counter() - self.t0,
                               transferred=len(self.todo) > len(self.samples))


def submit_samples(model, vp, kp, n: int, seed: int = 0, thermal: bool = True, mechanics: bool = True, pool=None,
                   with_nominal: bool = True, progress=None, trajectories: dict | None = None) -> PendingSamples:
    """Queue the ``n`` sampled chains of ``model`` (and, ``with_nominal``, the nominal run) on ``pool`` (a
    :func:`vertaug.study.worker_pool`, which may be running other work: the chains queue behind it), or leave them
    to :meth:`PendingSamples.result` when ``pool`` is None. Same chains, same results either way."""
    from ..model.heights import kept_heights
    from ..study import plan_study_trajectories

    t0 = time.perf_counter()
    samples = case_samples(model.level, n, seed, inputs=SAMPLED_INPUTS)
    trajectories = trajectories if trajectories is not None else plan_study_trajectories(model, vp, kp)
    todo = ([nominal_sample(vp, kp)] if with_nominal else []) + list(samples)
    kept = kept_heights(model)
    jobs = [(model, plan, s, thermal, mechanics, trajectories, kept) for s in todo
            for plan in sampled_plans(vp, kp, s)]
    if progress:
        progress(f"parameter samples: {len(jobs)} procedure chains at {model.spacing_m[0] * 1e3:g} mm")
    handle = pool.map_async(_one, [jobs[i] for i in _longest_first(jobs)], chunksize=1) if pool is not None else None
    return PendingSamples(model, int(n), tuple(samples), todo, jobs, handle, t0)


def _longest_first(jobs: list) -> list[int]:
    """Order in which the pool takes the chains: the second plan of each sample (the kyphoplasty: balloon, then the
    fill; ~2-3x a vertebroplasty chain at 2 mm) first, so that the last chains a worker takes are short and the
    two workers end close together."""
    return [i for i in range(len(jobs)) if i % 2 == 1] + [i for i in range(len(jobs)) if i % 2 == 0]
