"""The terminal summary of a comparison (rich table): VP | KP | difference | favoured, clinical units."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def comparison_table(c) -> Table:
    t = Table(title=f"{c.level}: vertebroplasty vs kyphoplasty (simulated; evidence in the report)")
    for col, just in (("quantity", "left"), ("unit", "left"), ("VP", "right"), ("KP", "right"), ("KP - VP", "right"),
                      ("favoured", "left")):
        t.add_column(col, justify=just, no_wrap=True)
    for r in c.rows:
        t.add_row(r.label, r.unit, r.vp_text, r.kp_text, r.diff_text, r.favoured)
    return t


def print_comparison(c, console: Console | None = None) -> None:
    console = console or Console()
    console.print(comparison_table(c))
    if c.states:
        s = Table(title="Voxel FE: stiffness and strength")
        for col in ("state", "stiffness N/mm", "strength N"):
            s.add_column(col, justify="left" if col == "state" else "right")
        for name, v in c.states.items():
            s.add_row(name, f"{v['stiffness_n_per_mm']:.0f}", f"{v['strength_n']:.0f}")
        console.print(s)
