"""Two `vertaug compare` runs with the same inputs write the same bytes (issue 23): comparison.json with its wall-clock
timings removed, and every NIfTI file. The second run uses the other --workers setting (KP chain in a second process),
which the help promises gives the same results."""

import json

import pytest
from typer.testing import CliRunner

from vertaug.cli import app


def _run(out, workers):
    r = CliRunner().invoke(app, ["compare", "--phantom", "wedge:2", "--level", "L1", "--out", str(out), "--spacing",
                                 "2", "--no-thermal", "--no-mechanics", "--workers", str(workers)])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "comparison.json").read_text())
    data.pop("timings_s")
    return data, {p.name: p.read_bytes() for p in sorted(out.glob("*.nii.gz"))}


@pytest.mark.slow
def test_compare_twice_gives_the_same_bytes(tmp_path):
    a_json, a_nii = _run(tmp_path / "a", workers=1)
    b_json, b_nii = _run(tmp_path / "b", workers=2)
    assert json.dumps(a_json, sort_keys=True) == json.dumps(b_json, sort_keys=True)
    assert len(a_nii) >= 3 and a_nii.keys() == b_nii.keys()
    different = [name for name in a_nii if a_nii[name] != b_nii[name]]
    assert not different, f"NIfTI files differ between two identical runs: {different}"
