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
from pathlib import Path

from rich.console import Console

from ..anatomy.io import Volume
from ..errors import InputError

__all__ = ["run_pipeline"]


def run_pipeline(ct: Volume, seg: Volume, level: str, out: str | Path, body: Volume | None = None,
                 numbering: str = "v2", spacing_mm: float = 1.0, vp=None, kp=None, thermal: bool = True,
                 mechanics: bool = True, fluoro: bool = False, inputs: dict | None = None,
                 console: Console | None = None) -> dict[str, Path]:
    console = console or Console()
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    # everything is written to a hidden temporary folder and moved into place at the end: a failed run leaves no
    # partial report that looks complete
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        written = _run(ct, seg, level, out, body, numbering, spacing_mm, vp, kp, thermal, mechanics, fluoro, inputs,
                       console)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    final.mkdir(exist_ok=True)
    for p in out.iterdir():
        os.replace(p, final / p.name)
    out.rmdir()
    return {k: (final / v.name if isinstance(v, Path) else v) for k, v in written.items()}


def _run(ct, seg, level, out, body, numbering, spacing_mm, vp, kp, thermal, mechanics, fluoro, inputs, console):
    from rich.progress import Progress

    from ..anatomy.morphometry import measure_volumes
    from ..model.trajectory import plan_trajectories
    from ..model.vertebra import vertebra_from_ct
    from ..procedures.kyphoplasty import Kyphoplasty, run_kyphoplasty
    from ..procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty
    from . import figures as fg
    from .compare import compare, write_outputs
    from .morpho_table import write_morphometry_json

    vp = vp or Vertebroplasty()
    kp = kp or Kyphoplasty()
    timings: dict[str, float] = {}
    notes: list[str] = []
    written: dict[str, Path] = {}
    stages = 6 + int(thermal) + int(mechanics) + int(fluoro)

    def timed(name, fn, *a, **k):
        t0 = time.perf_counter()
        r = fn(*a, **k)
        timings[name] = time.perf_counter() - t0
        return r

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("morphometry", total=stages)
        spine = timed("morphometry", measure_volumes, ct, seg, body, numbering)
        progress.update(task, advance=1, description=f"voxel model of {level} at {spacing_mm:g} mm")
        vertebra = timed("model", vertebra_from_ct, ct, seg, level, body=body, numbering=numbering,
                         spacing_mm=spacing_mm)
        progress.update(task, advance=1, description="cannula trajectories")
        trajectories = {a: timed(f"trajectory_{a}", plan_trajectories, vertebra, approach=a)
                        for a in {vp.approach, kp.approach}}
        progress.update(task, advance=1, description=f"vertebroplasty: {vp.volume_ml:g} mL {vp.cement} cement")
        vp_out = timed("vertebroplasty", run_vertebroplasty, vertebra, vp, trajectories=trajectories[vp.approach])
        progress.update(task, advance=1, description="kyphoplasty: balloon, cavity, fill")
        kp_out = timed("kyphoplasty", run_kyphoplasty, vertebra, kp, trajectories=trajectories[kp.approach])
        outcomes = {"VP": vp_out, "KP": kp_out}
        extra = {"VP": {}, "KP": {}}
        if "height_anterior_mm" not in vp_out.metrics:  # same height rule as KP for the side-by-side rows
            from ..procedures.kyphoplasty import height_metrics

            h = height_metrics(vertebra.labels, vp_out.model_after.labels, vertebra.spacing_m)
            extra["VP"].update({k: h[k] for k in ("height_anterior_mm", "wedge_angle_deg") if k in h})
        exotherms = {}
        if thermal:
            from ..procedures.exotherm import exotherm_after

            progress.update(task, advance=1, description="cement exotherm and thermal damage")
            for name, o in outcomes.items():
                ex = timed(f"exotherm_{name}", exotherm_after, o)
                exotherms[name] = ex
                extra[name].update(ex.metrics)
                notes.extend(f"{name} exotherm: {n}" for n in ex.notes)
        states = {}
        if mechanics:
            from ..procedures.stiffness import stiffness_states

            progress.update(task, advance=1, description="voxel FE stiffness and strength")
            try:
                states = timed("mechanics", stiffness_states, vertebra, outcomes)
            except InputError as exc:
                notes.append(f"mechanics not computed: {exc}")
            for name in ("VP", "KP"):
                if name in states:
                    extra[name]["stiffness_n_per_mm"] = states[name]["stiffness_n_per_mm"]
                    extra[name]["strength_n"] = states[name]["strength_n"]
        progress.update(task, advance=1, description="figures")
        figs = {"patient": [], "vp": [], "kp": [], "both": []}
        written["figure"] = fg.sagittal_level_figure(ct, seg, spine, level, out / f"{level}_sagittal.png")
        written["model_figure"] = fg.model_slices_figure(vertebra, out / f"{level}_model.png")
        figs["patient"] += [(written["figure"], f"{level}: mid-sagittal CT with the three heights"),
                            (written["model_figure"], f"{level}: voxel model (tissue labels over CT)")]
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
        if fluoro:
            progress.update(task, advance=1, description="fluoroscopy frames")
            written.update(_fluoro(ct, vertebra, outcomes, trajectories, vp, kp, out))
            if "key_frames" in written:
                figs["both"].append((written["key_frames"], "Simulated fluoroscopy key frames (lateral, AP)"))
        progress.update(task, advance=1, description="report")
        written["morphometry_json"] = write_morphometry_json(spine, out / "morphometry.json")
        all_inputs = {"level": level, "spacing_mm": spacing_mm, "numbering": numbering,
                      "vp": dict(vp_out.inputs), "kp": dict(kp_out.inputs), **(inputs or {})}
        comparison = compare(vertebra, spine, vp=vp_out, kp=kp_out, inputs=all_inputs, timings_s=timings,
                             extra_metrics=extra, states=states, notes=notes)
        written.update(write_outputs(comparison, out, ct=ct, seg=seg, figures=figs, exotherms=exotherms))
        progress.update(task, advance=1)
    written["_comparison"] = comparison  # type: ignore[assignment]
    return written


def _fluoro(ct, vertebra, outcomes, trajectories, vp, kp, out: Path) -> dict[str, Path]:
    """Frames of each procedure from its outcome: cannula placed, (balloon), cement at the end (arrival-time frames)."""
    import numpy as np

    from . import fluoro
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
