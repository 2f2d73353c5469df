"""``vertaug demo``: the pipeline on the bundled real CT (TotalSegmentator example, Apache-2.0).

Writes into the output folder: ``morphometry.json`` and ``morphometry.txt`` (all levels), and a sagittal figure of the
treated level. Later stages (procedures, report) add their outputs here as they land.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from rich.console import Console

from . import DISCLAIMER

#: The level the demo treats.
DEMO_LEVEL = "L1"


def example_paths() -> dict[str, Path]:
    """Paths of the bundled example CT, its TotalSegmentator labels and vertebrae_body map."""
    root = Path(str(files("vertaug") / "data" / "totalseg-example"))
    return {
        "ct": root / "example_ct.nii.gz",
        "seg": root / "totalseg.nii.gz",
        "body": root / "totalseg_vertebrae_body.nii.gz",
        "dicom": root / "dicom",
        "notice": root / "NOTICE.md",
    }


def run_demo(out: str | Path, console: Console | None = None) -> dict[str, Path]:
    from rich.progress import Progress

    from .anatomy.io import load_ct, load_labels
    from .anatomy.morphometry import measure_volumes
    from .report.figures import sagittal_level_figure
    from .report.morpho_table import morphometry_table, write_morphometry_json

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = example_paths()
    written: dict[str, Path] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading the bundled CT", total=3)
        ct = load_ct(paths["ct"])
        seg = load_labels(paths["seg"], ct, "segmentation")
        body = load_labels(paths["body"], ct, "vertebrae_body segmentation")
        progress.update(task, advance=1, description="morphometry of every level")
        spine = measure_volumes(ct, seg, body)
        progress.update(task, advance=1, description=f"figure of {DEMO_LEVEL}")
        written["morphometry_json"] = write_morphometry_json(spine, out / "morphometry.json")
        written["figure"] = sagittal_level_figure(ct, seg, spine, DEMO_LEVEL, out / f"{DEMO_LEVEL}_sagittal.png")
        progress.update(task, advance=1)
    table = morphometry_table(spine, title=f"Morphometry of the bundled CT ({paths['ct'].name})")
    console.print(table)
    txt = Console(record=True, width=160, file=open("/dev/null", "w"))
    txt.print(table)
    (out / "morphometry.txt").write_text(txt.export_text() + "\n" + DISCLAIMER + "\n")
    written["morphometry_txt"] = out / "morphometry.txt"
    console.print(f"[dim]{DISCLAIMER}[/]")
    console.print(f"outputs in [bold]{out}[/]: " + ", ".join(p.name for p in written.values()))
    return written
