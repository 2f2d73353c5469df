import os

# memory-bound sparse solvers: BLAS threads only contend on the 2-core CI machine
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest

from vertaug.demo import example_paths


@pytest.fixture(scope="session")
def example():
    """Paths of the bundled real CT (TotalSegmentator example, Apache-2.0)."""
    return example_paths()
