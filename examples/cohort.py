"""A small cohort: two samples of the uncertain inputs on a grade-2 wedge phantom, VP and KP each, on Dask.

The manifest names the cases (a phantom here; CT cases give ct/seg/body paths); ``run_cohort`` draws the samples
(seeded), runs each (case, sample) as one task and writes one Parquet row per procedure; re-running resumes.
``scheduler="serial"`` runs in this process; leave it out for a local Dask cluster, or give ``tcp://host:8786``.
Run: ``python examples/cohort.py``.
"""

import statistics
from pathlib import Path

from vertaug.cohort.manifest import Case
from vertaug.cohort.run import load_results, run_cohort
from vertaug.cohort.tasks import procedures_task


def main(out_dir: str | Path = "cohort-example", scheduler: str | None = "serial") -> dict[str, float]:
    case = Case("wedge2", "L1", phantom={"level": "L1", "fracture": "wedge", "grade": 2, "spacing_mm": 2.0})
    run = run_cohort([case], out_dir, samples=2, seed=1, task_fn=procedures_task, scheduler=scheduler,
                     progress=False)
    rows = load_results(run.out_dir).to_pylist()  # one dict per row
    out = {"rows": float(len(rows)), "failed": float(run.n_failed)}
    for name in ("VP", "KP"):
        mine = [r for r in rows if r["status"] == "ok" and r["procedure"] == name]
        for key in ("height_restored_mm", "leaked_ml"):
            out[f"{name}_{key}_median"] = float(statistics.median(r[key] for r in mine))
    for r in rows:
        print(f"{r['procedure']} sample {r['sample']}: {r['injected_ml']:.2f} mL injected, {r['leaked_ml']:.4f} mL "
              f"leaked, height restored {r['height_restored_mm']:.2f} mm")
    return out


if __name__ == "__main__":
    print(main())
