"""In-silico trial of vertebroplasty vs kyphoplasty over a virtual cohort (docs/trial.md).

:mod:`.population` (the TOML population, seeded patients), :mod:`.arms` (procedure plans per arm), :mod:`.runner`
(the patients as tasks of the cohort runner on Dask), :mod:`.statistics` (paired effects beside the published ones).
"""

from .population import (
           DEFAULT_POPULATION,
           Patient,
           Population,
           PopulationError,
           load_population,
           sample_patients,
)
from .runner import run_trial, trial_task

__all__ = ["DEFAULT_POPULATION", "Patient", "Population", "PopulationError", "load_population", "run_trial",
           "sample_patients", "trial_task"]
