"""Run the validation cases and write the comparison table (validation.json, validation.md, validation.html).

One record per published figure: case, source, quantity, published value +/- spread, ours, relative error
(ours - published) / |published|, within spread (|ours - published| <= spread; for yes/no findings: the same
answer), run time of the case, status and note. A case that raises is recorded with status "error" and its
message; a case whose model is not importable gets status "model not available"; the other cases go on.

``docs/validation.md`` is generated from the case list (:func:`render_docs`): setup, source and published figures
of every case between the markers ``CASES_BEGIN``/``CASES_END``, then the table of the run that wrote it.
"""

from __future__ import annotations

import html
import json
import math
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from vertaug.validate.cases import APPROX_REL_SPREAD, CASES, Case, Measured

__all__ = [
    "CASES_BEGIN",
    "CASES_END",
    "Record",
    "print_table",
    "render_cases_markdown",
    "render_docs",
    "render_html",
    "render_markdown_table",
    "run_case",
    "run_validation",
    "write_outputs",
]

CASES_BEGIN = "<!-- CASES_BEGIN: generated from vertaug.validate.cases.CASES; do not edit -->"
CASES_END = "<!-- CASES_END -->"
STATUS_OK, STATUS_ERROR, STATUS_MISSING = "ok", "error", "model not available"


@dataclass(frozen=True)
class Record:
    """One row of the comparison table. ``ours``/``rel_error``/``within`` are None when the case did not run."""

    case: str
    source: str
    quantity: str
    unit: str
    published: float
    spread: float
    spread_kind: str
    ours: float | None
    rel_error: float | None
    within: bool | None
    run_time_s: float
    status: str
    note: str


def _compare(target, measured: Measured | None, run_time_s: float, case: Case) -> Record:
    if measured is None or measured.ours is None or not math.isfinite(float(measured.ours)):
        return Record(case.name, case.source, target.quantity, target.unit, target.published, target.spread_abs,
                      target.spread_kind, None, None, None, run_time_s, STATUS_ERROR,
                      "the case returned no finite value for this quantity" if measured is None else measured.note)
    ours = float(measured.ours)
    rel = None
    if target.published != 0 and target.spread_kind != "direction":
        rel = (ours - target.published) / abs(target.published)
    within = target.contains(ours)
    return Record(case.name, case.source, target.quantity, target.unit, target.published, target.spread_abs,
                  target.spread_kind, ours, rel, bool(within), run_time_s, STATUS_OK, measured.note)


def run_case(case: Case, quick: bool) -> list[Record]:
    """Run one case and compare each of its targets; never raises (errors become records)."""
    missing = case.missing_modules()
    if missing:
        return [Record(case.name, case.source, t.quantity, t.unit, t.published, t.spread_abs, t.spread_kind, None,
                       None, None, 0.0, STATUS_MISSING, f"needs {', '.join(missing)}") for t in case.targets]
    t0 = time.perf_counter()
    try:
        measured = case.run(quick)
    except Exception as exc:  # noqa: BLE001 - a failing case is recorded, the others go on
        dt = time.perf_counter() - t0
        msg = f"{type(exc).__name__}: {exc}"
        return [Record(case.name, case.source, t.quantity, t.unit, t.published, t.spread_abs, t.spread_kind, None,
                       None, None, dt, STATUS_ERROR, msg) for t in case.targets]
    dt = time.perf_counter() - t0
    by_name = {m.quantity: m for m in measured}
    return [_compare(t, by_name.get(t.quantity), dt, case) for t in case.targets]


def run_validation(quick: bool = False, cases: Iterable[Case] | None = None, names: Iterable[str] | None = None,
                   progress=None) -> list[Record]:
    """Run ``cases`` (default: all of :data:`CASES`, or those in ``names``). ``progress(case_name)`` is called first."""
    selected = list(CASES if cases is None else cases)
    if names is not None:
        wanted = set(names)
        unknown = wanted - {c.name for c in selected}
        if unknown:
            from vertaug.errors import ParameterError

            raise ParameterError(f"Validation case(s) {sorted(unknown)} are unknown.",
                                 f"use names from: {', '.join(c.name for c in selected)}.")
        selected = [c for c in selected if c.name in wanted]
    records: list[Record] = []
    for case in selected:
        if progress is not None:
            progress(case.name)
        records.extend(run_case(case, quick))
    return records


# ------------------------------------------------------------------------------------------------------ output


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if unit == "yes=1":
        return "yes" if x >= 0.5 else "no"
    ax = abs(x)
    if ax != 0 and (ax < 1e-2 or ax >= 1e5):
        return f"{x:.3g}"
    return f"{x:.4g}" if ax < 10 else f"{x:.1f}"


def _published(r: Record) -> str:
    if r.spread_kind == "direction":
        return _fmt(r.published, r.unit)
    return f"{_fmt(r.published)} +/- {_fmt(r.spread)} ({r.spread_kind})"


def _within(r: Record) -> str:
    if r.status != STATUS_OK:
        return r.status
    return "yes" if r.within else "**no**"


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown_table(records: list[Record]) -> str:
    head = ("| case | source | quantity | unit | published | ours | rel. error | within spread | run time s | note |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for r in records:
        rel = "-" if r.rel_error is None else f"{100 * r.rel_error:+.1f} %"
        rows.append("| " + " | ".join(_md_cell(x) for x in (
            r.case, r.source, r.quantity, r.unit, _published(r), _fmt(r.ours, r.unit), rel, _within(r),
            f"{r.run_time_s:.1f}", r.note)) + " |")
    return head + "\n".join(rows) + "\n"


def _summary(records: list[Record]) -> str:
    ok = [r for r in records if r.status == STATUS_OK]
    within = sum(1 for r in ok if r.within)
    err = sum(1 for r in records if r.status == STATUS_ERROR)
    miss = sum(1 for r in records if r.status == STATUS_MISSING)
    total_s = sum({r.case: r.run_time_s for r in records}.values())
    return (f"{len(records)} published figures in {len({r.case for r in records})} cases: {within} of {len(ok)} "
            f"computed are within the published spread; {err} errored, {miss} without a model yet; "
            f"cases ran {total_s:.0f} s in all.")


def render_html(records: list[Record], title: str) -> str:
    cols = ("case", "source", "quantity", "unit", "published", "ours", "rel. error", "within spread", "run time s",
            "note")
    rows = []
    for r in records:
        rel = "-" if r.rel_error is None else f"{100 * r.rel_error:+.1f} %"
        cls = "na" if r.status != STATUS_OK else ("yes" if r.within else "no")
        cells = (r.case, r.source, r.quantity, r.unit, _published(r), _fmt(r.ours, r.unit), rel,
                 _within(r).replace("**", ""), f"{r.run_time_s:.1f}", r.note)
        rows.append(f'<tr class="{cls}">' + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title>\n"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:0.9em}"
        "td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top}tr.yes td:nth-child(8){background:#d8f0d8}"
        "tr.no td:nth-child(8){background:#f6d3d3}tr.na td:nth-child(8){background:#eee}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(_summary(records))}</p>\n<table>\n<tr>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>\n" + "\n".join(rows) + "\n</table>\n"
        "</body></html>\n"
    )


def write_outputs(records: list[Record], out_dir: Path, quick: bool) -> dict[str, Path]:
    """Write validation.json, validation.md and validation.html into ``out_dir``; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "full"
    meta = {"mode": mode, "python": platform.python_version(), "machine": platform.machine(),
            "approx_rel_spread": APPROX_REL_SPREAD, "summary": _summary(records)}
    paths = {"json": out / "validation.json", "md": out / "validation.md", "html": out / "validation.html"}
    paths["json"].write_text(json.dumps({"meta": meta, "records": [asdict(r) for r in records]}, indent=2) + "\n")
    paths["md"].write_text(f"# vertaug validation ({mode} run)\n\n{_summary(records)}\n\n"
                           + render_markdown_table(records))
    paths["html"].write_text(render_html(records, f"vertaug validation ({mode} run)"))
    return paths


# ------------------------------------------------------------------------------------------------------ docs


def render_cases_markdown(cases: Iterable[Case] = CASES) -> str:
    """The generated case list of docs/validation.md (names, sources, setups, published figures; no results)."""
    parts = [CASES_BEGIN, ""]
    for c in cases:
        parts.append(f"### `{c.name}`\n")
        parts.append(f"Source: {c.source}\n")
        parts.append("Published: " + "; ".join(
            f"{t.quantity} = {_published_target(t)}" for t in c.targets) + "\n")
        parts.append("Setup:\n\n" + "\n".join(("    " + line) if line else "" for line in c.setup.splitlines())
                     + "\n")
    parts.append(CASES_END)
    return "\n".join(parts) + "\n"


def _published_target(t) -> str:
    if t.spread_kind == "direction":
        return "yes" if t.published >= 0.5 else "no"
    return f"{_fmt(t.published)} +/- {_fmt(t.spread_abs)} {t.unit} ({t.spread_kind})"


_DOCS_HEAD = """# Validation: `vertaug validate`

This page is generated by `vertaug validate --docs docs/validation.md` (do not edit by hand); a test checks that its
case list matches the code (`vertaug.validate.cases.CASES`).

`vertaug validate [--quick] [--out DIR]` reruns every published experiment the models cover, each as a small named
scenario built with the same public API a user calls, and writes `validation.json`, `validation.md` and
`validation.html` (case, source, quantity, published value +/- spread, ours, relative error, within spread, run time,
note). Nothing is tuned per case: every case uses the model defaults and the sources in references.md; where
an experiment's setup is not given in the source we could read, the case names its assumption in capitals (ASSUMED).

Spread rules (one rule per kind, never per case):

- `SD`: the paper's standard deviation; within = |ours - mean| <= SD.
- `approx`: a figure given as "about X", or a mean without a spread in the abstract; spread = {approx:.0f} % of X.
- `numerical`: an analytic solution; spread = the discretisation tolerance stated by the case.
- `direction`: a yes/no finding; within = the same answer.
- `CI95`: a ratio with its published 95 % interval; within = inside the interval (spread shown: its larger half).

A case whose model has not landed is listed as "model not available"; a case that raises is listed as "error" with its
message; neither stops the others. `--quick` (coarser voxels and longer time steps, same physics) is part of CI
through tests/test_validate.py and runs in under 2 minutes; the full run is a benchmark.

## Cases

"""


def render_docs(records: list[Record] | None = None, quick: bool = False) -> str:
    """docs/validation.md: fixed text, the generated case list, and the table of ``records`` if given."""
    text = _DOCS_HEAD.format(approx=100 * APPROX_REL_SPREAD) + render_cases_markdown()
    if records:
        mode = "quick" if quick else "full"
        text += (f"\n## Results of the last {mode} run\n\n{_summary(records)}\n\n" + render_markdown_table(records))
    return text


def print_table(records: list[Record], console) -> None:
    """The comparison table on a rich console (the CLI's view of the same records)."""
    from rich.table import Table

    table = Table(title="vertaug validation", show_lines=False)
    for col in ("case", "quantity", "published", "ours", "rel. error", "within", "s"):
        table.add_column(col, overflow="fold")
    for r in records:
        rel = "-" if r.rel_error is None else f"{100 * r.rel_error:+.1f} %"
        within = _within(r).replace("**", "")
        style = {"yes": "green", "no": "red"}.get(within, "dim")
        table.add_row(r.case, f"{r.quantity} [{r.unit}]", _published(r), _fmt(r.ours, r.unit), rel,
                      f"[{style}]{within}[/]", f"{r.run_time_s:.1f}")
    console.print(table)
    console.print(_summary(records))
