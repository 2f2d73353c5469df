"""The whole VP vs KP pipeline for one level: model -> both procedures -> exotherm -> mechanics -> report.

Used by ``vertaug compare`` and ``vertaug demo``. Each stage is timed; a stage that fails on bad input raises the
InputError (the CLI prints it); a physics stage that cannot run on this model (e.g. mechanics without a load path) is
recorded as a note in the report and the others go on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from ..anatomy.io import Volume
from ..errors import InputError, check_range

__all__ = ["run_pipeline"]


def run_pipeline(ct: Volume, seg: Volume, level: str, out: str | Path, body: Volume | None = None,
                 numbering: str = "v2", spacing_mm: float = 1.0, vp=None, kp=None, thermal: bool = True,
                 mechanics: bool = True, fluoro: bool = False, inputs: dict | None = None,
                 console: Console | None = None, workers: int = 1) -> dict[str, Path]:
    """Run the pipeline and write the report folder ``out``; returns the paths written (and "_comparison").

    ``workers=2`` runs the kyphoplasty chain (balloon, fill, exotherm, its FE state) in a second process while this one
    runs the vertebroplasty chain and the pre-treatment FE state: the same results (each chain is deterministic and
    independent), in about the time of the longer chain on a machine with two free cores.
    """
    console = console or Console()
    workers = int(check_range("workers", workers, 1, 64, "", "1 (serial) or 2 (VP and KP chains side by side)."))
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    # everything is written to a hidden temporary folder and moved into place at the end: a failed run leaves no
    # partial report that looks complete
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        written = _run(ct, seg, level, out, body, numbering, spacing_mm, vp, kp, thermal, mechanics, fluoro, inputs,
                       console, workers)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    final.mkdir(exist_ok=True)
    for p in out.iterdir():
        os.replace(p, final / p.name)
    out.rmdir()
    return {k: (final / v.name if isinstance(v, Path) else v) for k, v in written.items()}


@contextmanager
def _second_process(workers: int):
    """A one-process spawn pool when ``workers >= 2`` (else None), started at once so that it imports the physics
    while this process builds the model; terminated on the way out, whatever happens."""
    if workers < 2:
        yield None
        return
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(1)
    try:
        pool.apply_async(_warm_up)
        yield pool
    finally:
        pool.terminate()
        pool.join()


def _warm_up() -> None:
    """Import the physics of the procedure chains (runs first in the second process, beside the model build)."""
    from ..procedures import exotherm, kyphoplasty, stiffness, vertebroplasty  # noqa: F401


def _procedure_chain(name: str, vertebra, spec, trajectories, thermal: bool, mechanics: bool, progress=None) -> dict:
    """One procedure on the pre-treatment model: outcome, exotherm (``thermal``) and FE state (``mechanics``).

    Module-level and free of console objects so that it can run in a worker process (``progress``: a callable
    taking a stage description, or None).
    """
    from ..procedures.kyphoplasty import run_kyphoplasty
    from ..procedures.vertebroplasty import run_vertebroplasty

    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    res: dict = {"timings": timings, "notes": [], "exotherm": None, "state": None}
    if name == "VP":
        say(f"vertebroplasty: {spec.volume_ml:g} mL {spec.cement} cement")
        res["outcome"] = _timed(timings, "vertebroplasty", run_vertebroplasty, vertebra, spec, trajectories=trajectories)
    else:
        say("kyphoplasty: balloon, cavity, fill")
        res["outcome"] = _timed(timings, "kyphoplasty", run_kyphoplasty, vertebra, spec, trajectories=trajectories)
    if thermal:
        from ..procedures.exotherm import exotherm_after

        say(f"{name}: cement exotherm and thermal damage")
        res["exotherm"] = _timed(timings, f"exotherm_{name}", exotherm_after, res["outcome"])
    if mechanics:
        say(f"{name}: voxel FE stiffness and strength")
        res["state"], note = _timed(timings, f"mechanics_{name}", _fe_state, vertebra, name, res["outcome"])
        if note:
            res["notes"].append(note)
    return res


def _timed(timings: dict, name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, its wall time stored in ``timings[name]`` (s)."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    timings[name] = time.perf_counter() - t0
    return result


def _fe_state(vertebra, name: str, outcome=None) -> tuple[dict | None, str | None]:
    """FE stiffness, strength and strain at the failure load of one state (``outcome`` None: the pre-treatment
    model), or a note why not."""
    from ..procedures.stiffness import state_mechanics

    try:
        if outcome is None:
            return state_mechanics(vertebra), None
        return state_mechanics(outcome.model_after, outcome.cement_fraction), None
    except InputError as exc:
        return None, f"mechanics not computed for {name}: {exc}"


def _run(ct, seg, level, out, body, numbering, spacing_mm, vp, kp, thermal, mechanics, fluoro, inputs, console,
         workers=1):
    from rich.progress import Progress

    from ..anatomy.morphometry import measure_volumes
    from ..model.trajectory import plan_trajectories
    from ..model.vertebra import vertebra_from_ct
    from ..procedures.kyphoplasty import Kyphoplasty
    from ..procedures.vertebroplasty import Vertebroplasty
    from . import figures as fg
    from .compare import compare, write_outputs
    from .morpho_table import write_morphometry_json

    vp = vp or Vertebroplasty()
    kp = kp or Kyphoplasty()
    timings: dict[str, float] = {}
    notes: list[str] = []
    written: dict[str, Path] = {}
    stages = 7 + int(thermal) + int(mechanics) + int(fluoro)  # the progress.update(advance=...) calls below

    def timed(name, fn, *a, **k):
        return _timed(timings, name, fn, *a, **k)

    t_start = time.perf_counter()
    with _second_process(workers) as pool, Progress(console=console, transient=True) as progress:
        task = progress.add_task("morphometry", total=stages)
        spine = timed("morphometry", measure_volumes, ct, seg, body, numbering)
        progress.update(task, advance=1, description=f"voxel model of {level} at {spacing_mm:g} mm")
        vertebra = timed("model", vertebra_from_ct, ct, seg, level, body=body, numbering=numbering,
                         spacing_mm=spacing_mm)
        progress.update(task, advance=1, description="cannula trajectories")
        trajectories = {a: timed(f"trajectory_{a}", plan_trajectories, vertebra, approach=a)
                        for a in {vp.approach, kp.approach}}
        progress.update(task, advance=1)
        say = lambda msg: progress.update(task, description=msg)
        kp_job = None
        if pool is not None:  # the KP chain in the second process, the VP chain and the pre-treatment state here
            kp_job = pool.apply_async(_procedure_chain, ("KP", vertebra, kp, trajectories[kp.approach], thermal,
                                                         mechanics))
        figs = {"patient": [], "vp": [], "kp": [], "both": []}
        try:
            chains = {"VP": _procedure_chain("VP", vertebra, vp, trajectories[vp.approach], thermal, mechanics, say)}
            progress.update(task, advance=1)
            pre_state = None
            if mechanics:
                say("pre-treatment: voxel FE stiffness and strength")
                pre_state, note = timed("mechanics_pre-treatment", _fe_state, vertebra, "pre-treatment")
                if note:
                    notes.append(note)
            say("figures of the level and its model")  # while the KP chain may still run
            written["figure"] = fg.sagittal_level_figure(ct, seg, spine, level, out / f"{level}_sagittal.png")
            written["model_figure"] = fg.model_slices_figure(vertebra, out / f"{level}_model.png")
            figs["patient"] += [(written["figure"], f"{level}: mid-sagittal CT with the three heights"),
                                (written["model_figure"], f"{level}: voxel model (tissue labels over CT)")]
            if kp_job is not None:
                say("kyphoplasty chain (second process): balloon, fill, exotherm, FE")
                chains["KP"] = kp_job.get()
                pool.close()
            else:
                chains["KP"] = _procedure_chain("KP", vertebra, kp, trajectories[kp.approach], thermal, mechanics, say)
        finally:
            if pool is not None:  # the KP chain is done (or failed): free the second process now
                pool.terminate()
        progress.update(task, advance=int(thermal) + int(mechanics))  # the KP chain, exotherms, FE states
        for name, ch in chains.items():
            timings.update(ch["timings"])
            notes.extend(ch["notes"])
        vp_out, kp_out = chains["VP"]["outcome"], chains["KP"]["outcome"]
        outcomes = {"VP": vp_out, "KP": kp_out}
        extra = {"VP": {}, "KP": {}}
        if "height_anterior_mm" not in vp_out.metrics:  # same height rule as KP for the side-by-side rows
            from ..procedures.kyphoplasty import height_metrics

            h = height_metrics(vertebra.labels, vp_out.model_after.labels, vertebra.spacing_m)
            extra["VP"].update({k: h[k] for k in ("height_anterior_mm", "wedge_angle_deg") if k in h})
        exotherms = {}
        for name, ch in chains.items():
            ex = ch["exotherm"]
            if ex is not None:
                exotherms[name] = ex
                extra[name].update(ex.metrics)
                notes.extend(f"{name} exotherm: {n}" for n in ex.notes)
        states, strain_fields = {}, {}
        if mechanics and pre_state is not None:
            for name, st in (("pre-treatment", pre_state), *((n, ch["state"]) for n, ch in chains.items())):
                if st is None:
                    continue
                strain_fields[name] = st.pop("strain_at_failure_pct", None)
                states[name] = st
                if name in extra:
                    extra[name]["stiffness_n_per_mm"] = st["stiffness_n_per_mm"]
                    extra[name]["strength_n"] = st["strength_n"]
        progress.update(task, advance=1, description="figures")
        for name, o in outcomes.items():
            p = fg.cement_slices_figure(o, out / f"cement_{name}.png", f"{name}")
            figs[name.lower()].append((p, f"{name}: cement after {o.metrics.get('injected_ml', 0):.1f} mL"))
        figs["kp"].append((fg.balloon_figure(kp_out, out / "balloon_pv.png"), "KP balloon pressure-volume"))
        figs["both"].append((fg.leakage_figure(outcomes, out / "leakage.png"), "Leakage by route"))
        figs["both"].append((fg.pressure_volume_figure(outcomes, out / "pressure_volume.png"),
                             "Plunger and bone pressure vs injected volume"))
        if exotherms:
            figs["both"].append((fg.temperature_figure(exotherms, out / "temperature.png"),
                                 "Temperature at the cement core, canal wall and cortex"))
        if states:
            figs["both"].append((fg.stiffness_figure(states, out / "stiffness.png"),
                                 "Stiffness and strength before and after"))
        if any(f is not None for f in strain_fields.values()):
            figs["both"].append((fg.failure_strain_figure(vertebra, strain_fields, out / "failure_strain.png"),
                                 "Strain at the FE failure load: where the level yields first, before and after"))
        if fluoro:
            progress.update(task, advance=1, description="fluoroscopy frames")
            written.update(_fluoro(ct, vertebra, outcomes, trajectories, vp, kp, out))
            if "key_frames" in written:
                figs["both"].append((written["key_frames"], "Simulated fluoroscopy key frames (lateral, AP)"))
        progress.update(task, advance=1, description="report")
        written["morphometry_json"] = write_morphometry_json(spine, out / "morphometry.json")
        all_inputs = {"level": level, "spacing_mm": spacing_mm, "numbering": numbering,
                      "vp": dict(vp_out.inputs), "kp": dict(kp_out.inputs), **(inputs or {})}
        timings["all_stages_wall"] = time.perf_counter() - t_start  # with workers=2 the chains' times overlap
        comparison = compare(vertebra, spine, vp=vp_out, kp=kp_out, inputs=all_inputs, timings_s=timings,
                             extra_metrics=extra, states=states, notes=notes)
        written.update(write_outputs(comparison, out, ct=ct, seg=seg, figures=figs, exotherms=exotherms,
                                     strain_fields=strain_fields))
        progress.update(task, advance=1)
    written["_comparison"] = comparison  # type: ignore[assignment]
    return written


def _fluoro(ct, vertebra, outcomes, trajectories, vp, kp, out: Path) -> dict[str, Path]:
    """Frames of each procedure from its outcome: cannula placed, (balloon), cement at the end (arrival-time frames)."""
    import numpy as np

    from ..imaging import fluoro
    from .figures import DISPLAY_MIN_FRACTION

    grid = fluoro.OverlayGrid.from_vertebra(vertebra)
    procs = {}
    for name, spec in (("VP", vp), ("KP", kp)):
        o = outcomes[name]
        cannulas = fluoro.cannulas_from_trajectories(vertebra, trajectories[spec.approach])
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
    return {k: Path(v) for k, v in fluoro.write_fluoro(out, ct, procs).items()}
