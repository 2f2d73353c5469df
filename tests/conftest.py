import pytest

from vertaug.demo import example_paths


@pytest.fixture(scope="session")
def example():
    """Paths of the bundled real CT (TotalSegmentator example, Apache-2.0)."""
    return example_paths()
