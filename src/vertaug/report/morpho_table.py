"""Morphometry as a rich table in the terminal and as JSON (clinical units: mm, mL, HU, degrees)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .. import DISCLAIMER, __version__
from ..anatomy.morphometry import SpineMorphometry


def _f(v: float, fmt: str = "{:.1f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def morphometry_table(spine: SpineMorphometry, title: str | None = None) -> Table:
    """Levels as rows; notes (and reasons for unevaluable levels) as numbered footnotes in the caption."""
    t = Table(title=title or f"Vertebral morphometry ({spine.ct_source})", caption_justify="left")
    for col in ("level", "Ha", "Hm", "Hp", "±H", "Ha/Hp", "Hm/Hp", "wedge", "vol", "HU", "HU med", "density", "SQ", "type"):
        t.add_column(col, justify="left" if col in ("level", "density", "type") else "right", no_wrap=True)
    notes: list[str] = []
    for m in spine.levels.values():
        texts = ([f"not evaluable: {m.reason}"] if not m.evaluable else []) + list(m.notes)
        refs = []
        for text in texts:
            if text not in notes:
                notes.append(text)
            refs.append(str(notes.index(text) + 1))
        name = m.level + (f" [{','.join(refs)}]" if refs else "")
        if not m.evaluable:
            t.add_row(name, *["-"] * 13)
            continue
        t.add_row(
            name,
            _f(m.height_anterior_mm),
            _f(m.height_middle_mm),
            _f(m.height_posterior_mm),
            _f(max(m.height_anterior_uncertainty_mm, m.height_middle_uncertainty_mm, m.height_posterior_uncertainty_mm)),
            _f(m.ratio_ha_hp, "{:.2f}"),
            _f(m.ratio_hm_hp, "{:.2f}"),
            _f(m.wedge_angle_deg),
            _f(m.volume_ml),
            _f(m.hu_mean, "{:.0f}"),
            _f(m.hu_median, "{:.0f}"),
            m.density_class or "-",
            "-" if m.genant_grade is None else str(m.genant_grade),
            m.genant_type or "-",
        )
    units = ("Heights Ha/Hm/Hp in mm (15/50/85 % of AP depth), ±H the largest of their standard uncertainties (mm), "
             "wedge in deg (+ = kyphotic), vol in mL, HU trabecular core.")
    bodies = sorted({m.body_source for m in spine.levels.values() if m.evaluable and m.body_source})
    ends = sorted({m.endplate_method for m in spine.levels.values() if m.evaluable and m.endplate_method})
    units += f"\nBody: {'; '.join(bodies) or '-'}. Endplates: {'; '.join(ends) or '-'}."
    t.caption = units + "".join(f"\n[{i + 1}] {n}" for i, n in enumerate(notes))
    return t


def print_morphometry(spine: SpineMorphometry, console: Console | None = None) -> None:
    console = console or Console()
    console.print(morphometry_table(spine))
    console.print(f"[dim]{DISCLAIMER}[/]")


def _clean(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def morphometry_dict(spine: SpineMorphometry) -> dict:
    d = spine.as_dict()
    d["vertaug_version"] = __version__
    d["units"] = {"height": "mm", "volume": "mL", "hu": "HU", "angle": "deg", "deformity": "fraction"}
    d["disclaimer"] = DISCLAIMER
    return _clean(d)


def write_morphometry_json(spine: SpineMorphometry, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(morphometry_dict(spine), indent=2))
    return path
