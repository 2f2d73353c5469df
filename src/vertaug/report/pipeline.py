"""The report of one level: CT -> morphometry -> voxel model -> the study chain -> figures, JSON, NIfTI, HTML.

Used by ``vertaug compare`` and ``vertaug demo``. The physics runs in :func:`vertaug.study.run_study` (the one chain);
this module measures, builds the model, calls it, and turns the :class:`~vertaug.study.Study` into files. A stage that
fails on bad input raises the InputError (the CLI prints it); a physics stage that cannot run on this model (e.g.
mechanics without a load path) is a note in the report and the others go on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ..anatomy.io import Volume
from ..errors import check_range
from ..study import (
    Study,
    pid_alive,
    plan_study_trajectories,
    run_study,
    stage_timer,
    start_worker_server,
    worker_pool,
)

__all__ = ["ReportRun", "run_pipeline"]


@dataclass(frozen=True, eq=False)
class ReportRun:
    """What :func:`run_pipeline` made: the comparison it reported, the study behind it and the files it wrote."""

    comparison: object  # report.compare.Comparison
    study: Study
    paths: dict[str, Path]


def run_pipeline(ct: Volume, seg: Volume, level: str, out: str | Path, body: Volume | None = None,
                 numbering: str = "v2", spacing_mm: float = 1.0, vp=None, kp=None, thermal: bool = True,
                 mechanics: bool = True, fluoro: bool = False, inputs: dict | None = None,
                 console: Console | None = None, workers: int = 1, fracture=None, samples: int = 0) -> ReportRun:
    """Run the study of ``level`` and write the report folder ``out`` (written whole at the end, or not at all).

    ``fracture``: an :class:`vertaug.anatomy.fracture.FracturedLevel` of this scan's ``level`` (a virtual fracture): the
    study runs on its CT, labels and body map, with its fracture-zone map weakening the fractured bone; ``ct``/``seg``
    stay the scan before the fracture (shown beside it). ``workers=2`` runs the kyphoplasty chain in a second process
    (:func:`vertaug.study.run_study`). ``samples``: parameter samples for the rows' 5-95 % ranges
    (:mod:`vertaug.report.sampling`; 0: numerical ranges only).
    """
    console = console or Console()
    workers = int(check_range("workers", workers, 1, 2, "", "1 (serial) or 2 (VP and KP chains side by side)."))
    samples = int(check_range("samples", samples, 0, 1000, "", "0 (no parameter samples) or more, e.g. 4."))
    if workers >= 2:
        start_worker_server()  # the workers' imports while the level is measured and modelled here
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_partials(final)
    # everything is written to a hidden temporary folder and moved into place at the end: a failed run leaves no
    # partial report that looks complete
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-{os.getpid()}-", dir=final.parent))
    try:
        job = _Job(ct, seg, level, body, numbering, spacing_mm, vp, kp, thermal, mechanics, fluoro, inputs, workers,
                   fracture, samples)
        comparison, study, written = _run(job, tmp, console)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final.mkdir(exist_ok=True)
    for p in tmp.iterdir():
        os.replace(p, final / p.name)
    tmp.rmdir()
    return ReportRun(comparison, study, {k: final / v.name for k, v in written.items()})


def sweep_stale_partials(final: Path) -> list[Path]:
    """Remove the hidden ``.NAME.partial-PID-*`` folders of ``final`` left by runs that were killed (PID gone)."""
    removed = []
    for p in Path(final).parent.glob(f".{Path(final).name}.partial-*"):
        pid = p.name.rsplit(".partial-", 1)[1].split("-", 1)[0]
        if p.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@dataclass(frozen=True, eq=False)
class _Job:
    ct: Volume
    seg: Volume
    level: str
    body: Volume | None
    numbering: str
    spacing_mm: float
    vp: object
    kp: object
    thermal: bool
    mechanics: bool
    fluoro: bool
    inputs: dict | None
    workers: int
    fracture: object = None  # anatomy.fracture.FracturedLevel
    samples: int = 0  # parameter samples (report.sampling)

    @property
    def scan(self) -> tuple[Volume, Volume, Volume | None]:
        """(CT, labels, body map) the study runs on: the fractured ones when there is a virtual fracture."""
        f = self.fracture
        return (f.ct, f.seg, f.body) if f is not None else (self.ct, self.seg, self.body)


def _run(job: _Job, out: Path, console: Console):
    """Measure, build, run the study (figures of the level drawn while the chains run), then write the report."""
    from rich.progress import Progress

    from ..model.vertebra import vertebra_from_ct
    from ..procedures.kyphoplasty import Kyphoplasty
    from ..procedures.vertebroplasty import Vertebroplasty

    vp, kp = job.vp or Vertebroplasty(), job.kp or Kyphoplasty()
    timings: dict[str, float] = {}
    written: dict[str, Path] = {}
    t_start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("morphometry", total=6 + int(job.fluoro))
        say = lambda msg: progress.update(task, description=msg)  # noqa: E731
        ct, seg, body = job.scan
        with stage_timer(timings, "morphometry"):
            spine, before = _morphometry(job)
        progress.update(task, advance=1, description=f"voxel model of {job.level} at {job.spacing_mm:g} mm")
        with stage_timer(timings, "model"):
            zone = job.fracture.zone if job.fracture is not None else None
            vertebra = vertebra_from_ct(ct, seg, job.level, body=body, numbering=job.numbering,
                                        spacing_mm=job.spacing_mm, fracture_zone=zone, spine=spine)
        progress.update(task, advance=1, description="cannula trajectories")
        trajectories = plan_study_trajectories(vertebra, vp, kp, timings)
        progress.update(task, advance=1)
        patient_figs = []
        sampler = _Sampler(job, vertebra, trajectories, vp, kp, say, timings, spine)
        # one pool: the KP chain first (and with two workers the VP chain and the untreated FE state), the sample
        # chains queued behind them; this process draws the figures
        with worker_pool((1 + (sampler.model is not None)) if job.workers >= 2 else 0) as pool:
            study = run_study(vertebra, vp, kp, job.thermal, job.mechanics, job.workers, trajectories, say,
                              during=lambda: patient_figs.extend(_level_figures(job, spine, before, vertebra, out,
                                                                                written, say)),
                              pool=pool, queued=sampler.submit)
            timings.update(study.timings_s)
            progress.update(task, advance=1, description="figures")
            figs = {"patient": patient_figs, **_study_figures(study, out)}
            if job.fluoro:
                progress.update(task, advance=1, description="fluoroscopy frames")
                written.update(_fluoro(ct, study, out))
                if "key_frames" in written:
                    figs["both"].append((written["key_frames"], "Simulated fluoroscopy key frames (lateral, AP)"))
            with stage_timer(timings, "parameter_samples_wait"):
                ranges, range_notes = sampler.result(study)
            if ranges is not None:  # from queueing to the last chain: it overlaps the study with workers=2
                timings["parameter_samples"] = ranges.wall_s
        progress.update(task, advance=1)
        say("report")
        timings["all_stages_wall"] = time.perf_counter() - t_start  # with workers=2 the chains' times overlap
        comparison, files = _write_report(job, spine, before, study, timings, figs, out, ranges, range_notes)
        written.update(files)
        progress.update(task, advance=1)
    return comparison, study, written


def _morphometry(job: _Job):
    """(morphometry of the scan the study runs on, of the scan before a virtual fracture or None). A fracture made by
    fracture_level carries both (it measured them); anything else is measured here."""
    from ..anatomy.morphometry import measure_volumes

    f = job.fracture
    if f is None:
        return measure_volumes(job.ct, job.seg, job.body, job.numbering), None
    if f.spine_after is not None and f.spine_before is not None and f.numbering == job.numbering:
        return f.spine_after, f.spine_before
    return (measure_volumes(f.ct, f.seg, f.body, job.numbering),
            measure_volumes(job.ct, job.seg, job.body, job.numbering))


def _level_figures(job: _Job, spine, before, vertebra, out: Path, written: dict, say) -> list[tuple[Path, str]]:
    """Mid-sagittal CT with the heights, and the voxel model's labels (no physics: drawn while the chains run)."""
    from . import figures as fg

    say("figures of the level and its model")
    level = job.level
    ct, seg, body = job.scan
    figs = []
    if before is not None:
        written["figure_before_fracture"] = fg.sagittal_level_figure(job.ct, job.seg, before, level,
                                                                     out / f"{level}_sagittal_before_fracture.png")
        figs.append((written["figure_before_fracture"], f"{level} as scanned, before the virtual fracture"))
    written["figure"] = fg.sagittal_level_figure(ct, seg, spine, level, out / f"{level}_sagittal.png")
    written["model_figure"] = fg.model_slices_figure(vertebra, out / f"{level}_model.png")
    after = "after the virtual fracture, " if job.fracture is not None else ""
    return figs + [(written["figure"], f"{level}: mid-sagittal CT {after}with the three heights"),
                   (written["model_figure"], f"{level}: voxel model (tissue labels over CT)")]


def _study_figures(study: Study, out: Path) -> dict[str, list[tuple[Path, str]]]:
    """The procedures' figures: cement slices, balloon P-V, leakage, pressures, temperatures, FE states."""
    from . import figures as fg
    from .figures_cavity import cavity_cement_figure

    outcomes = {name: run.outcome for name, run in study.runs.items()}
    figs: dict[str, list] = {"vp": [], "kp": [], "both": []}
    for name, o in outcomes.items():
        p = fg.cement_slices_figure(o, out / f"cement_{name}.png",
                                    {"VP": "Vertebroplasty", "KP": "Kyphoplasty"}.get(name, name))
        figs[name.lower()].append((p, f"{name}: cement after {o.injection.injected_ml:.1f} mL"))
    figs["kp"].append((fg.balloon_figure(study.kp.outcome, out / "balloon_pv.png"), "KP balloon pressure-volume"))
    cav = cavity_cement_figure(study.kp.outcome, out / "cavity_cement.png")
    if cav is not None:
        figs["kp"].append((cav, "KP: balloon space and cavity outlined over the cement that fills them"))
    figs["both"].append((fg.leakage_figure(outcomes, out / "leakage.png"), "Leakage by route"))
    figs["both"].append((fg.pressure_volume_figure(outcomes, out / "pressure_volume.png"),
                         "Plunger and bone pressure vs injected volume"))
    exotherms = {n: r.exotherm for n, r in study.runs.items() if r.exotherm is not None}
    if exotherms:
        figs["both"].append((fg.temperature_figure(exotherms, out / "temperature.png"),
                             "Temperature: cement-core voxel, canal wall and cortex over time; "
                             "thin lines: the peak of all cement voxels, as in the table"))
    states = _reported_states(study)
    if states:
        figs["both"].append((fg.stiffness_figure({k: v.to_dict() for k, v in states.items()}, out / "stiffness.png"),
                             "Stiffness and strength before and after"))
        strain = {k: v.strain_at_failure_pct for k, v in states.items()}
        if any(f is not None for f in strain.values()):
            figs["both"].append((fg.failure_strain_figure(study.pre, strain, out / "failure_strain.png"),
                                 "Strain at the FE failure load: where the level yields first, before and after"))
    return figs


def _reported_states(study: Study) -> dict:
    """FE states shown side by side: none unless the untreated state was solved (nothing to compare with)."""
    return study.mechanics_states() if study.pre_mechanics is not None else {}


class _Sampler:
    """The report's parameter samples (report.sampling): the sampling model built up front (the coarser one, or the
    report's own when that is as coarse), the chains queued on the study's pool behind the KP chain (``submit``) or,
    without a pool, run after the study; ``result`` gathers them: (ParameterRanges or None, notes)."""

    def __init__(self, job: _Job, vertebra, trajectories: dict, vp, kp, say, timings: dict, spine=None):
        from ..errors import InputError
        from ..model.vertebra import vertebra_from_ct
        from .sampling import SAMPLE_SPACING_MM, carried_trajectories

        self.job, self.vp, self.kp, self.say = job, vp, kp, say
        self.sp = max(SAMPLE_SPACING_MM, job.spacing_mm)
        self.transfer = self.sp > job.spacing_mm
        self.model, self.paths, self.pending, self.note = None, trajectories, None, None
        if job.samples < 1:
            self.note = "parameter ranges: not sampled (--samples 0); the ranges are numerical only"
            return
        with stage_timer(timings, "parameter_samples_model"):
            try:
                if self.transfer:
                    ct, seg, body = job.scan
                    zone = job.fracture.zone if job.fracture is not None else None
                    self.model = vertebra_from_ct(ct, seg, job.level, body=body, numbering=job.numbering,
                                                  spacing_mm=self.sp, fracture_zone=zone, spine=spine)
                    self.paths = carried_trajectories(trajectories, vertebra, self.model)
                else:
                    self.model = vertebra
            except InputError as exc:  # e.g. the coarser model cannot be built: the report goes on without them
                self.note = (f"parameter ranges: not computed on the {self.sp:g} mm sampling model ({exc}); the ranges "
                             "are numerical only")

    def submit(self, pool=None) -> None:
        """Queue the chains on ``pool`` (None: they run in this process when ``result`` is called)."""
        from .sampling import submit_samples

        if self.model is not None and self.pending is None:
            j = self.job
            self.pending = submit_samples(self.model, self.vp, self.kp, j.samples, thermal=j.thermal,
                                          mechanics=j.mechanics, pool=pool, with_nominal=self.transfer,
                                          progress=self.say, trajectories=self.paths)

    def result(self, study: Study):
        from ..errors import InputError
        from .compare import study_metrics

        if self.model is None:
            return None, (self.note,)
        self.submit(None)
        nominal = None
        if not self.transfer:
            vp_m, kp_m = study_metrics(study, study.mechanics_states() if study.pre_mechanics is not None else {})
            nominal = {"VP": vp_m, "KP": kp_m}
        try:
            ranges = self.pending.result(nominal)
        except InputError as exc:  # a sampled chain's input error: the report goes on without the samples
            return None, (f"parameter ranges: not computed on the {self.sp:g} mm sampling model ({exc}); the ranges "
                          "are numerical only",)
        sp, j = self.sp, self.job
        how = (f"{j.samples} Latin-hypercube samples of permeability, cement start time and CT calibration, chains "
               f"on a {sp:g} mm model" + (f", carried over to the {j.spacing_mm:g} mm model by ratio to a nominal "
                                          f"{sp:g} mm run" if ranges.transferred else "")
               + "; time: timings_s.parameter_samples")
        return ranges, (f"parameter ranges: {how}",)


def _write_report(job: _Job, spine, before, study: Study, timings: dict, figs: dict, out: Path, ranges=None,
                  range_notes=()):
    """comparison.json, morphometry.json, NIfTI overlays and report.html from the study."""
    from .compare import compare, write_outputs
    from .morpho_table import write_morphometry_json

    written = {"morphometry_json": write_morphometry_json(spine, out / "morphometry.json")}
    vp_out, kp_out = study.vp.outcome, study.kp.outcome
    all_inputs = {"level": job.level, "spacing_mm": job.spacing_mm, "numbering": job.numbering,
                  "vp": dict(vp_out.inputs), "kp": dict(kp_out.inputs), **(job.inputs or {})}
    ct, seg, _ = job.scan
    if job.fracture is not None:
        all_inputs["fracture"] = job.fracture.parameters()
        m = before[job.level]
        all_inputs["morphometry_before"] = {k: getattr(m, k) for k in (
            "height_anterior_mm", "height_middle_mm", "height_posterior_mm", "wedge_angle_deg", "genant_grade")}
        written.update(_write_fractured_scan(job.fracture, out))
    states = _reported_states(study)
    comparison = compare(study, spine, inputs=all_inputs, timings_s=timings, states=states, notes=range_notes,
                         ranges=ranges)
    written.update(write_outputs(comparison, out, ct=ct, seg=seg, figures=figs,
                                 strain_fields={k: v.strain_at_failure_pct for k, v in states.items()}))
    return comparison, written


def _write_fractured_scan(fracture, out: Path) -> dict[str, Path]:
    """The virtually fractured CT and its fracture-zone map, the base images of the NIfTI overlays in 3D Slicer."""
    import numpy as np

    from ..anatomy.io import save_nifti

    return {"nifti_fractured_ct": save_nifti(np.asarray(fracture.ct.data, np.float32), fracture.ct.affine_mm,
                                             out / "fractured_ct.nii.gz"),
            "nifti_fracture_zone": save_nifti(np.asarray(fracture.zone.data, np.uint8), fracture.zone.affine_mm,
                                              out / "fracture_zone.nii.gz")}


def _fluoro(ct, study: Study, out: Path) -> dict[str, Path]:
    """Frames of each procedure from its outcome: cannula placed, (balloon), cement at the end (arrival-time frames)."""
    import numpy as np

    from ..imaging import fluoro
    from .figures import DISPLAY_MIN_FRACTION

    vertebra = study.pre
    grid = fluoro.OverlayGrid.from_vertebra(vertebra)
    procs = {}
    for name, run in study.runs.items():
        o = run.outcome
        cannulas = fluoro.cannulas_from_trajectories(vertebra, study.trajectories[run.plan.approach])
        frames = [fluoro.FluoroFrame("cannula placed", cannulas=cannulas)]
        cav = o.fields.get("balloon_cavity")
        if cav is not None:
            frames.append(fluoro.FluoroFrame("balloon inflated", balloon=np.asarray(cav, dtype=np.float32),
                                             cannulas=cannulas))
        t_arr = np.asarray(o.arrival_time_s)
        f = np.asarray(o.cement_fraction)
        f = np.where(f >= DISPLAY_MIN_FRACTION, f, 0.0)  # numerical traces of the front are not visible cement
        finite = np.isfinite(t_arr) & (f > 0)
        if finite.any():
            t0, t1 = float(t_arr[finite].min()), float(t_arr[finite].max())
            for q in (0.33, 0.66, 1.0):
                cut = t0 + q * (t1 - t0)
                part = np.where(finite & (t_arr <= cut), f, 0.0).astype(np.float32)
                vol = float(part.sum()) * vertebra.voxel_volume_m3 * 1e6
                frames.append(fluoro.FluoroFrame(f"cement {vol:.1f} mL", cement_fraction=part, cannulas=cannulas))
        frames.append(fluoro.FluoroFrame("cannula removed", cement_fraction=f.astype(np.float32)))
        procs[name] = (grid, frames)
    # every frame is a key frame (the balloon inflated included): at most six per procedure
    n_key = max(len(frames) for _, frames in procs.values())
    return {k: Path(v) for k, v in fluoro.write_fluoro(out, ct, procs, n_key=n_key).items()}
