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


@pytest.fixture(scope="session")
def chromium_shot():
    """scripts/report_screenshot.py loaded as a module (headless Chromium: console messages, screenshots); the test
    skips where no Chromium is installed (CI has none)."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "report_screenshot.py"
    spec = importlib.util.spec_from_file_location("report_screenshot", script)
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    if shot.chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return shot
