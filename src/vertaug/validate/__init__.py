"""Validation suite: published experiments rerun as named scenarios and compared with the published figures.

``vertaug validate [--quick] [--out DIR]``; see docs/validation.md.
"""

from vertaug.validate.cases import CASES, Case, Measured, Target, case_names
from vertaug.validate.run import Record, render_docs, run_validation, write_outputs

__all__ = [
           "CASES",
           "Case",
           "Measured",
           "Record",
           "Target",
           "case_names",
           "render_docs",
           "run_validation",
           "write_outputs",
]
