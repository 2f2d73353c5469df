"""A small in-silico trial: VP and KP on every patient of a virtual cohort, the paired effects beside the published.

The population (``vertaug/trial/population.toml``; copy and edit it to change the cohort) says where the patients'
vertebrae come from and how their fractures, clefts, breaks and densities are distributed; ``run_trial`` samples the
patients (seeded), runs every patient as one task of the cohort runner (``scheduler="serial"`` here; leave it out for a
local Dask cluster, or give ``tcp://host:8786``) and writes ``results.parquet`` and ``trial_summary.json/.md/.html``.
This example restricts the population to the phantom source at 2 mm so that it runs in about a minute.
Run: ``python examples/trial.py``.
"""

from dataclasses import replace
from pathlib import Path

from vertaug.trial.population import load_population
from vertaug.trial.runner import run_trial
from vertaug.trial.statistics import markdown


def main(out_dir: str | Path = "trial-example", patients: int = 8, scheduler: str | None = "serial") -> dict:
    pop = load_population()
    phantoms = tuple(s for s in pop.sources if s.phantom)
    pop = replace(pop, sources=phantoms, spacing_mm=2.0)
    run, summary = run_trial(out_dir, pop, patients=patients, seed=1, scheduler=scheduler, progress=False)
    print(markdown(summary))
    arms = summary["arms"]
    return {"patients": run.n_tasks, "failed": run.n_failed, "paired": summary["n_patients_paired"],
            "VP_procedure_s": arms["VP"]["procedure_s_mean"], "KP_procedure_s": arms["KP"]["procedure_s_mean"],
            "KP_minus_VP_height_mm": summary["table"][2]["simulated"]["estimate"],
            "VP_injected_ml": arms["VP"]["injected_ml_mean"], "KP_injected_ml": arms["KP"]["injected_ml_mean"]}


if __name__ == "__main__":
    main()
