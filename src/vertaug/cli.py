"""The ``vertaug`` command line (typer + rich). Clinical units at this interface: mm, mL, HU, degrees."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import DISCLAIMER, __version__
from .errors import InputError

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


def _fail(exc: InputError) -> None:
    err_console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


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
    numbering: str = typer.Option("v2", help="TotalSegmentator label numbering: v2 (>= 2.0, L1=31) or v1 (L1=22)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the table as JSON to this file."),
) -> None:
    """Morphometry of every vertebra in the segmentation: heights, volume, HU, wedge angle, Genant grade."""
    from .anatomy.morphometry import measure_spine
    from .report.morpho_table import print_morphometry, write_morphometry_json

    try:
        spine = measure_spine(ct, seg, body=body, numbering=numbering)
    except InputError as exc:
        _fail(exc)
    print_morphometry(spine, console)
    if json_out is not None:
        write_morphometry_json(spine, json_out)
        console.print(f"wrote {json_out}")


@app.command()
def demo(
    out: Path = typer.Option(Path("vertaug-demo"), "--out", help="Output folder."),
) -> None:
    """Run vertaug on the bundled real CT (TotalSegmentator example, Apache-2.0) and write its outputs to OUT."""
    from .demo import run_demo

    try:
        run_demo(out, console)
    except InputError as exc:
        _fail(exc)


if __name__ == "__main__":  # pragma: no cover
    app()
