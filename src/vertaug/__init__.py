"""vertaug: what vertebroplasty and kyphoplasty would do to one patient's fractured vertebra, and how they differ.

A research and teaching tool, not a medical device: its numbers come from models and published evidence, and must not
guide the treatment of a patient.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vertaug")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

DISCLAIMER = (
    "vertaug is a research and teaching tool, not a medical device. Its results come from simplified physical models "
    "and published group-level evidence; they must not be used to diagnose or to choose a patient's treatment."
)

__all__ = ["__version__", "DISCLAIMER"]
