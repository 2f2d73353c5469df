"""The terminal summary of a comparison (rich tables that fit 80 columns): VP | KP | difference +/- its numerical
range, under it the 5-95 % range of the parameter samples | favoured, clinical units; the reasons for rows without a
difference as numbered footnotes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

#: what the "favoured" column says for a difference within its range
WITHIN = "neither"


def comparison_table(c) -> tuple[Table, list[str]]:
    """The table and its footnotes (the reasons of rows without a difference)."""
    ranges = getattr(c, "ranges", None)
    sampled = (f"; 2nd line: 5-95 % over {ranges.n_samples} parameter samples" if ranges is not None else "")
    t = Table(title=f"{c.level}: VP vs KP (simulated; +/- = numerical range{sampled})", title_justify="left",
              expand=False)
    t.add_column("quantity (unit)", justify="left", overflow="fold", ratio=1, min_width=18)
    for col in ("VP", "KP", "KP - VP"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("fav.", justify="left", no_wrap=True)
    notes: list[str] = []
    for r in c.rows:
        label = f"{r.label.strip()} ({r.unit})" if r.unit != "-" else r.label.strip()
        if r.reason:
            if r.reason not in notes:
                notes.append(r.reason)
            label += f" [{notes.index(r.reason) + 1}]"
        diff = r.diff_text + (f" {r.range_text('diff')}" if r.range_text("diff") else "")
        diff += f"\n{r.sampled_text('diff')}" if r.sampled_text("diff") else ""
        fav = WITHIN if r.favoured == "equal" else r.favoured
        t.add_row(("  " if r.label.startswith("  ") else "") + label, r.vp_text, r.kp_text, diff, fav)
    return t, notes


def print_comparison(c, console: Console | None = None) -> None:
    console = console or Console()
    table, notes = comparison_table(c)
    console.print(table)
    for i, n in enumerate(notes, 1):
        console.print(f"[{i}] {n}", highlight=False)
    console.print("favoured: only where the range of KP - VP excludes zero; 'neither' otherwise.", highlight=False)
    if c.states:
        s = Table(title="Voxel FE: stiffness and strength", title_justify="left")
        for col in ("state", "stiffness N/mm", "strength N"):
            s.add_column(col, justify="left" if col == "state" else "right")
        for name, v in c.states.items():
            s.add_row(name, f"{v['stiffness_n_per_mm']:.0f}", f"{v['strength_n']:.0f}")
        console.print(s)
