"""The ``vertaug`` command line (typer + rich). Clinical units at this interface: mm, mL, HU, degrees."""

from __future__ import annotations

import os
import sys
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    # sparse/stencil solvers are memory-bound: BLAS threads only contend (measured 1000x slower dots on 2 loaded cores)
    os.environ.setdefault(_var, "1")
from typing import Optional

import typer
from rich.console import Console

from . import DISCLAIMER, __version__
from .errors import InputError, check_output_dir, check_output_file, terminal_safe

app = typer.Typer(
    name="vertaug",
    help="Vertebroplasty vs kyphoplasty for one vertebra: simulation, numbers and evidence. " + DISCLAIMER,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Tables need ~120 columns; when the output is not a terminal (pipes, CI logs) rich would assume 80.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
#: Two processes where two cores exist: the VP and KP chains are independent.
_DEFAULT_WORKERS = 2 if (os.cpu_count() or 1) >= 2 else 1
#: Parameter samples of compare / demo (report.sampling.DEFAULT_SAMPLES; not imported here to keep startup light).
_DEFAULT_SAMPLES = 4


#: Exit codes: 2 bad input (one line: the problem and the fix), 3 a solver failure, 4 a cohort with failed or lost
#: tasks (every good row written).
CODE_BAD_INPUT = 2
CODE_NUMERICAL_FAILURE = 3
CODE_COHORT_INCOMPLETE = 4


def _say(prefix: str, text: str) -> None:
    """One line on stderr: ``text`` escaped (no rich markup, no control characters from file names)."""
    from rich.markup import escape

    err_console.print(f"{prefix} {escape(terminal_safe(text))}", soft_wrap=True, highlight=False)


def _fail(exc: InputError) -> None:
    _say("[bold red]error:[/]", str(exc))
    raise typer.Exit(code=CODE_BAD_INPUT)


def _numerical_failure(exc: RuntimeError) -> None:
    """A solver that did not converge (not bad input): one line and exit 3; VERTAUG_TRACEBACK=1 shows the traceback."""
    if os.environ.get("VERTAUG_TRACEBACK"):
        raise exc
    _say("[bold red]numerical failure:[/]", f"{exc} Fix: not an input error; try --workers 1 or another "
         "--spacing, and report it with the output of VERTAUG_TRACEBACK=1.")
    raise typer.Exit(code=CODE_NUMERICAL_FAILURE)


@app.callback(invoke_without_command=True)
def _main(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        console.print(f"vertaug {__version__}")
        raise typer.Exit()


@app.command()
def morpho(
    ct: Path = typer.Argument(..., help="CT: a NIfTI file (.nii/.nii.gz) or a folder of DICOM slices (HU)."),
    seg: Path = typer.Argument(..., help="TotalSegmentator vertebra label map (NIfTI) on the CT's grid."),
    body: Optional[Path] = typer.Option(None, "--body", help="TotalSegmentator vertebrae_body map (1 body, 2 disc)."),
    numbering: str = typer.Option("v2", help="Label numbering: v2 (TotalSegmentator >= 2.0, L1=31), v1 (L1=22) or verse (L1=20)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the table as JSON to this file."),
    endplates: str = typer.Option("surface", "--endplates",
                                  help="Endplates: surface (CT edge points fitted by surfaces, default), ct (sub-voxel CT edge fit per line) or mask."),
    method: str = typer.Option("vertaug", "--method",
                               help="Heights: vertaug (median of lines, default) or totalseg (TotalSegmentator spine report's way)."),
) -> None:
    """Morphometry of every vertebra in the segmentation: heights, volume, HU, wedge angle, Genant grade."""
    from .anatomy.morphometry import measure_spine
    from .report.morpho_table import print_morphometry, write_morphometry_json

    try:
        if json_out is not None:
            check_output_file(json_out, "--json")
        spine = measure_spine(ct, seg, body=body, numbering=numbering, endplates=endplates, method=method)
    except InputError as exc:
        _fail(exc)
    print_morphometry(spine, console)
    if json_out is not None:
        write_morphometry_json(spine, json_out)
        console.print(f"wrote {json_out}")


@app.command()
def score(
    ct: Optional[Path] = typer.Argument(None, help="CT (NIfTI or DICOM folder); leave CT and SEG out to score from flags only."),
    seg: Optional[Path] = typer.Argument(None, help="TotalSegmentator vertebra label map (NIfTI) on the CT's grid."),
    level: str = typer.Option(..., "--level", help="Level to score, e.g. L1."),
    body: Optional[Path] = typer.Option(None, "--body", help="TotalSegmentator vertebrae_body map (1 body, 2 disc)."),
    numbering: str = typer.Option("v2", help="Label numbering: v2 (TotalSegmentator >= 2.0, L1=31), v1 (L1=22) or verse (L1=20)."),
    pain_weeks: Optional[float] = typer.Option(None, "--pain-weeks", help="Weeks since the pain began."),
    vas: Optional[float] = typer.Option(None, "--vas", help="Pain 0-10 (under WHO step II analgesia for the OF-score)."),
    t_score: Optional[float] = typer.Option(None, "--t-score", help="DXA T-score."),
    neuro_deficit: Optional[bool] = typer.Option(None, "--neuro-deficit/--no-neuro-deficit", help="Deficit N2-N4."),
    pain_refractory: Optional[bool] = typer.Option(
        None, "--pain-refractory/--no-pain-refractory", help="Optimal pain management has failed."),
    mri_oedema: Optional[bool] = typer.Option(None, "--mri-oedema/--no-mri-oedema", help="Bone oedema on MRI (STIR)."),
    tender: Optional[bool] = typer.Option(None, "--tender/--no-tender", help="Focal tenderness at the level."),
    progression: Optional[bool] = typer.Option(None, "--progression/--no-progression", help="Deformity progressing."),
    mobile: Optional[bool] = typer.Option(None, "--mobile/--not-mobile", help="Mobilisation possible under analgesia."),
    tension_band: Optional[bool] = typer.Option(
        None, "--tension-band-failure/--no-tension-band-failure", help="Anterior/posterior tension band failure."),
    posterior_wall: Optional[bool] = typer.Option(
        None, "--posterior-wall/--no-posterior-wall", help="Distinct (> 1/5) posterior wall involvement."),
    of_class: Optional[str] = typer.Option(None, "--of-class", help="AO OF class if already known (OF1..OF5)."),
    asa_gt3: Optional[bool] = typer.Option(None, "--asa-gt3/--no-asa-gt3", help="ASA class above 3."),
    mfi_gt2: Optional[bool] = typer.Option(None, "--mfi-gt2/--no-mfi-gt2", help="5-item modified frailty index above 2."),
    anticoagulation: Optional[bool] = typer.Option(None, "--anticoagulation/--no-anticoagulation"),
    sins_pain: Optional[str] = typer.Option(None, "--sins-pain", help="SINS pain: mechanical, occasional, none."),
    sins_lesion: Optional[str] = typer.Option(None, "--sins-lesion", help="SINS lesion: lytic, mixed, blastic."),
    sins_alignment: Optional[str] = typer.Option(None, "--sins-alignment", help="subluxation, deformity, normal."),
    sins_posterolateral: Optional[str] = typer.Option(None, "--sins-posterolateral", help="bilateral, unilateral, none."),
) -> None:
    """Clinical scores of one level (Genant, QM, AO OF class and OF-score, SINS, eligibility) with their reasons.

    Anything not given stays unknown and is shown as such; nothing is filled in by default.
    """
    from .anatomy.levels import normalize_level
    from .clinical.scores import assess, morphology_for, print_assessment
    from .errors import ParameterError

    try:
        lvl = normalize_level(level)
        morph = None
        if (ct is None) != (seg is None):
            raise ParameterError("vertaug score needs both CT and SEG, or neither.",
                                 "give both paths, or leave both out to score from the flags only.")
        if ct is not None:
            from .anatomy.morphometry import measure_spine

            morph = morphology_for(measure_spine(ct, seg, body=body, numbering=numbering), lvl)
        result = assess(
            morph, level=lvl, pain_weeks=pain_weeks, vas=vas, neuro_deficit=neuro_deficit,
            pain_refractory=pain_refractory, mri_oedema=mri_oedema, focal_tenderness=tender, t_score=t_score,
            deformity_progression=progression, mobilisation_possible=mobile, tension_band_failure=tension_band,
            posterior_wall_distinct=posterior_wall, of_class=of_class, asa_gt3=asa_gt3, mfi_gt2=mfi_gt2,
            anticoagulation=anticoagulation, sins_pain=sins_pain, sins_lesion=sins_lesion,
            sins_alignment=sins_alignment, sins_posterolateral=sins_posterolateral,
        )
    except InputError as exc:
        _fail(exc)
    print_assessment(result, console)
    console.print(DISCLAIMER)


def _fracture_spec(spec: str, option: str) -> tuple[str, int]:
    """'wedge:2' -> ('wedge', 2); ParameterError naming the option otherwise."""
    from .errors import ParameterError

    kind, sep, grade = str(spec).partition(":")
    try:
        g = int(grade) if sep else None
    except ValueError:
        g = None
    if g is None:
        raise ParameterError(f"{option} {spec!r} is not TYPE:GRADE.", f"write e.g. {option} wedge:2 (type wedge, "
                             "biconcave or crush; Genant grade 1, 2 or 3).")
    return kind.strip().lower(), g


def _check_run_options(spacing_mm: float, workers: int, samples: int = 0) -> None:
    """--spacing, --workers and --samples of compare/demo, checked before anything is loaded."""
    from .errors import check_range

    check_range("--spacing", spacing_mm, 0.25, 3.0, "mm", "use --spacing 1.0 (default) or 0.5 mm; 2 for a quick look.")
    check_range("--workers", workers, 1, 2, "", "use --workers 1 (serial) or 2 (VP and KP chains side by side).")
    check_range("--samples", samples, 0, 1000, "", "use --samples 0 (numerical ranges only), 4 (default) or more.")


@app.command()
def compare(
    ct: Optional[Path] = typer.Argument(None, help="CT: a NIfTI file or a folder of DICOM slices (HU); "
                                        "leave CT and SEG out with --phantom."),
    seg: Optional[Path] = typer.Argument(None, help="TotalSegmentator vertebra label map (NIfTI) on the CT's grid."),
    level: str = typer.Option(..., "--level", help="Level to treat, e.g. L1."),
    out: Path = typer.Option(..., "--out", help="Output folder (report.html, comparison.json, NIfTI overlays)."),
    body: Optional[Path] = typer.Option(None, "--body", help="TotalSegmentator vertebrae_body map (1 body, 2 disc)."),
    numbering: str = typer.Option("v2", help="Label numbering: v2 (TotalSegmentator, L1=31), v1 (L1=22) or verse "
                                  "(L1=20)."),
    vp_volume: float = typer.Option(4.0, "--vp-volume", help="Vertebroplasty cement volume (mL)."),
    vp_rate: float = typer.Option(0.05, "--vp-rate", help="Vertebroplasty injection rate (mL/s)."),
    kp_balloon: float = typer.Option(2.0, "--kp-balloon", help="Kyphoplasty balloon volume per balloon (mL)."),
    approach: str = typer.Option("bipedicular", help="bipedicular or unipedicular (both procedures)."),
    cement: Optional[str] = typer.Option(None, "--cement", help="Cement of both: low, high (= Palacos R), "
                                          "or a named cement (Palacos R, CMW 1; Kyphon HV-R, Vertecem V+ have no rheometry); "
                                          "default VP low, KP high."),
    spacing: float = typer.Option(1.0, "--spacing", help="Model voxel size (mm): 1.0 or 0.5."),
    thermal: bool = typer.Option(True, "--thermal/--no-thermal", help="Simulate the exotherm and thermal damage."),
    mechanics: bool = typer.Option(True, "--mechanics/--no-mechanics", help="Voxel FE stiffness and strength."),
    fluoro: bool = typer.Option(False, "--fluoro/--no-fluoro", help="Write simulated fluoroscopy animations."),
    workers: int = typer.Option(_DEFAULT_WORKERS, "--workers", help="Processes: 2 runs the KP chain beside the VP "
                                "chain (same results); 1 runs them one after the other."),
    fracture: Optional[str] = typer.Option(None, "--fracture", help="Fracture the level first: TYPE:GRADE, e.g. "
                                           "wedge:2 (wedge, biconcave, crush; Genant grade 1-3)."),
    cleft: bool = typer.Option(False, "--cleft", help="With --fracture: add an intravertebral (Kummell) gas cleft."),
    cortical_break: Optional[str] = typer.Option(None, "--cortical-break", help="With --fracture: anterior, lateral "
                                                 "or posterior wall break."),
    endplate_break: bool = typer.Option(True, "--endplate-break/--no-endplate-break",
                                        help="With --fracture: break the depressed endplate (a path to the disc)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fracture lines' positions."),
    phantom: Optional[str] = typer.Option(None, "--phantom", help="Use a synthetic phantom instead of CT and SEG: "
                                          "TYPE:GRADE (e.g. wedge:2) or none:0."),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM CT folder with several series: the "
                                         "SeriesInstanceUID to read."),
    samples: int = typer.Option(_DEFAULT_SAMPLES, "--samples", help="Parameter samples (permeability, cement start "
                                "time, CT calibration) for each number's 5-95 % range; 0: numerical ranges only."),
) -> None:
    """Simulate vertebroplasty and kyphoplasty of one level and write the side-by-side report."""
    from .anatomy.io import load_ct, load_labels
    from .errors import ParameterError
    from .procedures.kyphoplasty import Kyphoplasty
    from .procedures.vertebroplasty import Vertebroplasty
    from .report.pipeline import run_pipeline
    from .report.summary import print_comparison

    try:
        check_output_dir(out, "--out")
        _check_run_options(spacing, workers, samples)
        vp = Vertebroplasty(volume_ml=vp_volume, rate_ml_s=vp_rate, approach=approach, cement=cement or "low")
        kp = Kyphoplasty(balloon_ml=kp_balloon, approach=approach, cement=cement or "high")
        fr = None
        if (cleft or cortical_break) and fracture is None:
            raise ParameterError("--cleft and --cortical-break shape a virtual fracture.",
                                 "add --fracture TYPE:GRADE (e.g. --fracture wedge:2).")
        if phantom is not None:
            from .anatomy.phantom import make_phantom

            if ct is not None or seg is not None or fracture is not None:
                raise ParameterError("--phantom replaces CT, SEG and --fracture.",
                                     "give either --phantom TYPE:GRADE or CT SEG [--fracture TYPE:GRADE].")
            kind, grade = _fracture_spec(phantom, "--phantom")
            ph = make_phantom(level=level, fracture=kind, grade=grade, cleft=cleft,
                              cortical_defect=cortical_break is not None)
            ct_vol, seg_vol, body_vol, numbering = ph.ct, ph.labels, ph.body, ph.numbering
            inputs = {"phantom": {"level": ph.spec.level, "type": kind, "grade": grade}}
        else:
            if ct is None or seg is None:
                raise ParameterError("vertaug compare needs CT and SEG, or --phantom TYPE:GRADE.",
                                     "give both paths, or --phantom wedge:2.")
            ct_vol = load_ct(ct, series)
            seg_vol = load_labels(seg, ct_vol, "segmentation")
            body_vol = load_labels(body, ct_vol, "vertebrae_body segmentation") if body is not None else None
            inputs = {"ct": str(ct), "seg": str(seg), "body": str(body) if body else None}
            if fracture is not None:
                from .anatomy.fracture import fracture_level

                kind, grade = _fracture_spec(fracture, "--fracture")
                fr = fracture_level(ct_vol, seg_vol, level, kind, grade, cleft=cleft, endplate_break=endplate_break,
                                    cortical_break=cortical_break, seed=seed, body=body_vol, numbering=numbering)
                console.print(fr.summary_line())
        run = run_pipeline(ct_vol, seg_vol, level, out, body=body_vol, numbering=numbering, spacing_mm=spacing,
                           vp=vp, kp=kp, thermal=thermal, mechanics=mechanics, fluoro=fluoro,
                           inputs=inputs, console=console, workers=workers, fracture=fr, samples=samples)
    except InputError as exc:
        _fail(exc)
    except RuntimeError as exc:
        _numerical_failure(exc)
    print_comparison(run.comparison, console)
    console.print(f"[dim]{DISCLAIMER}[/]")
    console.print(f"report: [bold]{run.paths['html']}[/] ({len(run.paths)} files in {out})")


@app.command("fracture")
def fracture_cmd(
    ct: Path = typer.Argument(..., help="CT: a NIfTI file or a folder of DICOM slices (HU)."),
    seg: Path = typer.Argument(..., help="Vertebra label map (NIfTI) on the CT's grid."),
    level: str = typer.Option(..., "--level", help="Level to fracture, e.g. L1."),
    out: Path = typer.Option(..., "--out", help="Output folder: ct, seg, body, fracture_zone (.nii.gz), fracture.json."),
    kind: str = typer.Option("wedge", "--type", help="Genant type: wedge, biconcave or crush."),
    grade: int = typer.Option(2, "--grade", help="Genant grade: 1 (20-25 %), 2 (25-40 %), 3 (> 40 % height loss)."),
    deformity: Optional[float] = typer.Option(None, "--deformity", help="Height-loss fraction instead of a grade."),
    cleft: bool = typer.Option(False, "--cleft", help="Add an intravertebral (Kummell) gas cleft."),
    cortical_break: Optional[str] = typer.Option(None, "--cortical-break", help="anterior, lateral or posterior."),
    endplate_break: bool = typer.Option(True, "--endplate-break/--no-endplate-break",
                                        help="Break the depressed endplate (a path to the disc)."),
    body: Optional[Path] = typer.Option(None, "--body", help="TotalSegmentator vertebrae_body map (1 body, 2 disc)."),
    numbering: str = typer.Option("v2", help="Label numbering: v2 (TotalSegmentator, L1=31), v1 (L1=22) or verse "
                                  "(L1=20)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fracture lines' positions."),
    series: Optional[str] = typer.Option(None, "--series", help="DICOM CT folder with several series: the "
                                         "SeriesInstanceUID to read."),
) -> None:
    """Fracture one level of a CT virtually and write the fractured CT, labels, body map and fracture-zone map."""
    import json

    import numpy as np

    from .anatomy.fracture import fracture_level
    from .anatomy.io import load_ct, load_labels, save_nifti
    from .anatomy.morphometry import measure_volumes

    try:
        check_output_dir(out, "--out")
        ct_vol = load_ct(ct, series)
        seg_vol = load_labels(seg, ct_vol, "segmentation")
        body_vol = load_labels(body, ct_vol, "vertebrae_body segmentation") if body is not None else None
        fr = fracture_level(ct_vol, seg_vol, level, kind, grade, deformity=deformity, cleft=cleft,
                            endplate_break=endplate_break, cortical_break=cortical_break, seed=seed, body=body_vol,
                            numbering=numbering)
    except InputError as exc:
        _fail(exc)
    out.mkdir(parents=True, exist_ok=True)
    save_nifti(fr.ct.data.astype(np.float32), fr.ct.affine_mm, out / "ct.nii.gz")
    save_nifti(fr.seg.data.astype(np.uint16), fr.seg.affine_mm, out / "seg.nii.gz")
    save_nifti(fr.body.data.astype(np.uint8), fr.body.affine_mm, out / "body.nii.gz")
    save_nifti(fr.zone.data.astype(np.uint8), fr.zone.affine_mm, out / "fracture_zone.nii.gz")
    m = measure_volumes(fr.ct, fr.seg, fr.body, numbering)[fr.level]
    record = {"vertaug": __version__, "inputs": {"ct": str(ct), "seg": str(seg), "body": str(body) if body else None},
              "fracture": fr.parameters(),
              "morphometry_after": {"genant_type": m.genant_type, "genant_grade": m.genant_grade,
                                    "deformity": m.deformity, "height_anterior_mm": m.height_anterior_mm,
                                    "height_middle_mm": m.height_middle_mm, "height_posterior_mm": m.height_posterior_mm}}
    (out / "fracture.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    console.print(f"{fr.level}: {fr.kind} grade {fr.grade} asked; morphometry of the result: {m.genant_type} grade "
                  f"{m.genant_grade} (deformity {m.deformity:.3f}); bone mass {fr.bone_mass_before_mg:.0f} -> "
                  f"{fr.bone_mass_after_mg:.0f} mg; zones {fr.zone_voxels}")
    for note in fr.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"wrote {out}/ct.nii.gz, seg.nii.gz, body.nii.gz, fracture_zone.nii.gz, fracture.json")


@app.command()
def demo(
    out: Path = typer.Option(Path("vertaug-demo"), "--out", help="Output folder."),
    spacing: float = typer.Option(1.0, "--spacing", help="Model voxel size (mm)."),
    fluoro: bool = typer.Option(True, "--fluoro/--no-fluoro", help="Write simulated fluoroscopy animations."),
    thermal: bool = typer.Option(True, "--thermal/--no-thermal", help="Simulate the exotherm."),
    mechanics: bool = typer.Option(True, "--mechanics/--no-mechanics", help="Voxel FE stiffness and strength."),
    workers: int = typer.Option(_DEFAULT_WORKERS, "--workers", help="Processes: 2 runs the KP chain beside the VP "
                                "chain (same results); 1 runs them one after the other."),
    fracture: bool = typer.Option(True, "--fracture/--no-fracture", help="Fracture L1 virtually first (acute grade-2 "
                                  "wedge with an endplate break; the default), or treat L1 as scanned."),
    samples: int = typer.Option(_DEFAULT_SAMPLES, "--samples", help="Parameter samples (permeability, cement start "
                                "time, CT calibration) for each number's 5-95 % range; 0: numerical ranges only."),
) -> None:
    """VP vs KP on L1 of the bundled real CT (TotalSegmentator example, Apache-2.0), by default after a simulated
    acute grade-2 wedge compression fracture of that real vertebra; writes the report to OUT."""
    from .demo import run_demo

    try:
        check_output_dir(out, "--out")
        _check_run_options(spacing, workers, samples)
        run_demo(out, console, spacing_mm=spacing, fluoro=fluoro, thermal=thermal, mechanics=mechanics,
                 workers=workers, fracture=fracture, samples=samples)
    except InputError as exc:
        _fail(exc)
    except RuntimeError as exc:
        _numerical_failure(exc)


@app.command()
def cohort(
    manifest: Path = typer.Argument(..., help="Manifest CSV: case_id, level, ct, seg[, body] or phantom (docs/cohort.md)."),
    out: Path = typer.Option(..., "--out", help="Output folder (Parquet parts, results.parquet, summary)."),
    samples: int = typer.Option(10, "--samples", help="Latin hypercube samples per case over the uncertain inputs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples (same seed, same samples)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786), or 'serial' (no Dask); default: a "
        "local cluster with one single-threaded worker process per core."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes of the local cluster."),
    task: Optional[str] = typer.Option(None, "--task", help="Per-task function 'module:function' (default: the "
                                       "pre-treatment model; VP+KP: vertaug.cohort.tasks:procedures_task)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run the recorded failures again."),
    synthetic: Optional[int] = typer.Option(
        None, "--synthetic", help="First write a synthetic phantom cohort of this many cases to MANIFEST."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """Cases x parameter samples on Dask, written to Parquet as tasks finish; re-running resumes."""
    from .cohort.run import resolve_task, run_cohort
    from .cohort.summary import print_summary, summarize

    try:
        check_output_dir(out, "--out")
        if synthetic is not None:
            from .cohort.synthetic import write_synthetic_cohort

            write_synthetic_cohort(manifest, synthetic, seed=seed)
            console.print(f"wrote synthetic manifest {manifest} ({synthetic} cases)")
        result = run_cohort(manifest, out, samples=samples, seed=seed, task_fn=resolve_task(task), scheduler=scheduler,
                            n_workers=workers, retry_failed=retry_failed, progress=progress, console=console)
        console.print(f"{result.n_tasks} tasks: {result.n_skipped} already done, {result.n_written} written "
                      f"({result.n_failed} failed), {result.n_lost} lost (re-run to retry) in {result.elapsed_s:.1f} s "
                      f"on {result.scheduler}")
        if result.results_path is not None:
            print_summary(summarize(out), console)
            console.print(f"results: {result.results_path}")
    except InputError as exc:
        _fail(exc)
    if result.n_failed or result.n_lost:
        _say("[bold yellow]incomplete:[/]", f"{result.n_failed} task(s) failed and {result.n_lost} were lost; every "
             f"finished row is in {out}. Fix: see the error column of the failed rows (vertaug.cohort.run."
             "load_results), correct those cases, and re-run with --retry-failed.")
        raise typer.Exit(code=CODE_COHORT_INCOMPLETE)


@app.command()
def trial(
    out: Path = typer.Option(..., "--out", help="Output folder: Parquet parts, results.parquet, trial_summary.*."),
    population: Optional[Path] = typer.Option(None, "--population", help="Population TOML (default: the shipped "
                                              "one, docs/trial.md)."),
    patients: Optional[int] = typer.Option(None, "--patients", help="Virtual patients (default: the file's)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the patients (default: the file's)."),
    arm: Optional[list[str]] = typer.Option(None, "--arm", help="Extra arm of the file to run (repeatable; VP "
                                            "and KP always run; default: every arm)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Dask scheduler address (tcp://host:8786), or 'serial' (no Dask); default: a "
        "local cluster with one single-threaded worker process per core."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes of the local cluster."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
) -> None:
    """In-silico trial: VP and KP on every patient of a virtual cohort, effects beside the published ones."""
    from .trial.runner import run_trial
    from .trial.statistics import SUMMARY_JSON, markdown

    try:
        result, summary = run_trial(out, population, patients=patients, seed=seed, scheduler=scheduler,
                                    n_workers=workers, progress=progress, console=console, arms=arm)
    except InputError as exc:
        _fail(exc)
    console.print(f"{result.n_tasks} patients: {result.n_skipped} already done, {result.n_written} written "
                  f"({result.n_failed} failed), {result.n_lost} lost (re-run to retry) in {result.elapsed_s:.1f} s "
                  f"on {result.scheduler}")
    console.print(markdown(summary), markup=False)
    console.print(f"summary: {out / SUMMARY_JSON}")


@app.command()
def validate(
    quick: bool = typer.Option(False, "--quick", help="Coarser voxels and longer time steps (under 2 min; run in CI)."),
    out: Path = typer.Option(Path("vertaug-validation"), "--out", help="Folder for validation.json, .md and .html."),
    case: Optional[list[str]] = typer.Option(None, "--case", help="Run only this case (repeatable; default all)."),
    docs: Optional[Path] = typer.Option(None, "--docs", help="Also write the generated docs page "
                                        "(docs/validation.md: case list and this run's table) to this path."),
) -> None:
    """Rerun every published experiment we model and compare with the published figures (docs/validation.md)."""
    from .validate.run import print_table, render_docs, run_validation, write_outputs

    try:
        check_output_dir(out, "--out")
        if docs is not None:
            check_output_file(docs, "--docs")
        records = run_validation(quick=quick, names=case or None,
                                 progress=lambda name: err_console.print(f"running {name}"))
    except InputError as exc:
        _fail(exc)
    print_table(records, console)
    paths = write_outputs(records, out, quick)
    console.print(f"wrote {paths['json']}, {paths['md']}, {paths['html']}")
    if docs is not None:
        docs.write_text(render_docs(records, quick))
        console.print(f"wrote {docs}")


if __name__ == "__main__":  # pragma: no cover
    app()
