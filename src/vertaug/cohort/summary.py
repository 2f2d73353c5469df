"""Cohort summary: per-metric distributions by procedure, failures, and P(VP leaks more than KP) per case.

For each numeric metric column (inputs and bookkeeping excluded) and each procedure (``VP``, ``KP``, or ``pre`` for
the default task): n, mean, SD and the 5th / 50th / 95th percentiles over the successful rows, and one box plot per
metric with one box per procedure (``summary_metrics.png``). Box plots rather than violins: a metric that does not
vary over the samples (e.g. a height when only material inputs are sampled) has no kernel density.

Leakage comparison, per case, over the samples where both VP and KP rows succeeded (paired by sample, so both
procedures see the same sampled inputs):

    P(VP > KP) = (#{L_VP > L_KP} + 0.5 #{L_VP = L_KP}) / n

with ``L`` the leaked volume ``leaked_ml`` (or, if absent, the sum of the per-route columns ``leaked_ml_<route>``),
and its 95 % Wilson score interval, p_hat +- z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n) around
(p + z^2/2n) / (1 + z^2/n), z = 1.96.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .run import load_results
from .sampling import INPUT_NAMES

__all__ = ["SUMMARY_FILE", "CohortSummary", "leak_volumes", "p_vp_leaks_more", "print_summary", "summarize"]

SUMMARY_FILE = "summary.json"
FIGURE_FILE = "summary_metrics.png"
NOT_METRICS = frozenset({"sample", "seed", "worker_pid", "elapsed_s", "cpu_s", *INPUT_NAMES})
LEAK_METRIC = "leaked_ml"
Z95 = 1.959963984540054
PROCEDURE_ORDER = ("pre", "VP", "KP")


@dataclass(frozen=True)
class CohortSummary:
    n_rows: int
    n_ok: int
    n_failed: int
    metrics: dict  # metric -> procedure -> {n, mean, sd, p5, p50, p95}
    failures: list = field(default_factory=list)  # [{case_id, n_samples, error_type, error}]
    p_vp_leaks_more: dict = field(default_factory=dict)  # case_id -> {p, n, low95, high95}
    figure: str | None = None


def _columns(table) -> dict:
    return {name: table.column(name).to_pylist() for name in table.column_names}


def _numeric_metrics(cols: dict) -> list[str]:
    out = []
    for name, values in cols.items():
        if name in NOT_METRICS:
            continue
        vals = [v for v in values if v is not None]
        if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out.append(name)
    return out


def _stats(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not x.size:
        return {"n": 0}
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return {"n": int(x.size), "mean": float(x.mean()), "sd": float(x.std(ddof=1)) if x.size > 1 else 0.0,
            "p5": float(p5), "p50": float(p50), "p95": float(p95)}


def leak_volumes(cols: dict) -> list | None:
    """Per-row leaked volume (mL): ``leaked_ml``, else the sum of ``leaked_ml_<route>`` columns, else None."""
    if LEAK_METRIC in cols:
        return cols[LEAK_METRIC]
    routes = [c for c in cols if c.startswith(LEAK_METRIC + "_")]
    if not routes:
        return None
    return [None if any(cols[r][i] is None for r in routes) else sum(cols[r][i] for r in routes)
            for i in range(len(cols[routes[0]]))]


def _wilson(p: float, n: int) -> tuple[float, float]:
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def p_vp_leaks_more(cols: dict) -> dict:
    """Per case: P(VP leaks more than KP) over samples with both procedures ok (see the module docstring)."""
    leak = leak_volumes(cols)
    if leak is None:
        return {}
    pairs: dict = {}
    for i, proc in enumerate(cols["procedure"]):
        if proc in ("VP", "KP") and cols["status"][i] == "ok" and leak[i] is not None and np.isfinite(leak[i]):
            pairs.setdefault(cols["case_id"][i], {}).setdefault(cols["sample"][i], {})[proc] = float(leak[i])
    out = {}
    for case, by_sample in sorted(pairs.items()):
        both = [(d["VP"], d["KP"]) for d in by_sample.values() if "VP" in d and "KP" in d]
        if not both:
            continue
        n = len(both)
        p = (sum(vp > kp for vp, kp in both) + 0.5 * sum(vp == kp for vp, kp in both)) / n
        lo, hi = _wilson(p, n)
        out[case] = {"p": p, "n": n, "low95": lo, "high95": hi}
    return out


def _failures(cols: dict) -> list:
    by_case: dict = {}
    for i, status in enumerate(cols["status"]):
        if status != "ok":
            d = by_case.setdefault(cols["case_id"][i], {"case_id": cols["case_id"][i], "n_samples": 0,
                                                        "error_type": cols["error_type"][i], "error": cols["error"][i]})
            d["n_samples"] += 1
    return list(by_case.values())


def _figure(cols: dict, metrics: list[str], ok: np.ndarray, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    procs = [p for p in PROCEDURE_ORDER if p in set(cols["procedure"])] + sorted(
        {p for p in cols["procedure"] if p and p not in PROCEDURE_ORDER})
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), dpi=100, squeeze=False)
    proc = np.array(cols["procedure"], dtype=object)
    for ax, name in zip(axes.flat, metrics):
        vals = np.array([np.nan if v is None else v for v in cols[name]], dtype=float)
        data, labels = [], []
        for p in procs:
            x = vals[ok & (proc == p)]
            x = x[np.isfinite(x)]
            if x.size:
                data.append(x)
                labels.append(p)
        if data:
            ax.boxplot(data, tick_labels=labels, whis=(5, 95), showfliers=False)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("cohort metrics by procedure (box: quartiles, whiskers: 5-95 %)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summarize(out_dir: str | Path, figure: bool = True) -> CohortSummary:
    """Summarise the rows in ``out_dir``; write ``summary.json`` (and ``summary_metrics.png``) there."""
    out_dir = Path(out_dir)
    cols = _columns(load_results(out_dir))
    ok = np.array([s == "ok" for s in cols["status"]])
    metrics = _numeric_metrics({k: [v for v, g in zip(vals, ok) if g] for k, vals in cols.items()})
    proc = np.array(cols["procedure"], dtype=object)
    stats = {}
    for name in metrics:
        vals = np.array([np.nan if v is None else v for v in cols[name]], dtype=float)
        stats[name] = {p: _stats(vals[ok & (proc == p)]) for p in sorted({p for p in proc[ok] if p})}
    fig_path = None
    if figure and metrics:
        fig_path = str(_figure(cols, metrics, ok, out_dir / FIGURE_FILE))
    summary = CohortSummary(len(ok), int(ok.sum()), int((~ok).sum()), stats, _failures(cols),
                            p_vp_leaks_more(cols), fig_path)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(asdict(summary), indent=2))
    return summary


def print_summary(summary: CohortSummary, console) -> None:
    """Rich tables: metrics (median and 5-95 % by procedure), failures, P(VP leaks more than KP)."""
    from rich.table import Table

    t = Table(title=f"cohort: {summary.n_ok} rows ok, {summary.n_failed} failed")
    t.add_column("metric")
    procs = sorted({p for d in summary.metrics.values() for p in d})
    for p in procs:
        t.add_column(f"{p} median [5-95 %]", justify="right")
    for name, d in summary.metrics.items():
        cells = []
        for p in procs:
            s = d.get(p, {"n": 0})
            cells.append(f"{s['p50']:.4g} [{s['p5']:.3g}, {s['p95']:.3g}]" if s["n"] else "-")
        t.add_row(name, *cells)
    console.print(t)
    if summary.p_vp_leaks_more:
        t = Table(title="P(VP leaks more than KP), paired by sample")
        for c in ("case", "P", "95 % CI", "n"):
            t.add_column(c)
        for case, d in summary.p_vp_leaks_more.items():
            t.add_row(case, f"{d['p']:.2f}", f"[{d['low95']:.2f}, {d['high95']:.2f}]", str(d["n"]))
        console.print(t)
    if summary.failures:
        t = Table(title="failed cases")
        for c in ("case", "samples", "error"):
            t.add_column(c)
        for f in summary.failures:
            t.add_row(f["case_id"], str(f["n_samples"]), f"{f['error_type']}: {f['error']}")
        console.print(t)
    if summary.figure:
        console.print(f"figure: {summary.figure}")
