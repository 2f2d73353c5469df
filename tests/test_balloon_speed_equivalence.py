"""Balloon: the incremental front (balloon._Front) equals the full-grid definition at every step, and a noisy
wedge inflation (hundreds of crush steps and some lift steps) gives the same numbers as the full-grid code did.

The pinned numbers were produced by the full-grid implementation (two whole-grid dilations per step, commit
6ac373f) before the front was made incremental; the incremental code must reproduce them exactly (rel 1e-12).
"""

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from vertaug.anatomy.phantom import make_phantom
from vertaug.model.labels import BODY
from vertaug.model.trajectory import plan_trajectories
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.physics import balloon as bl


@pytest.fixture(scope="module")
def noisy_wedge():
    """2 mm wedge phantom (grade 2) with N(0, 25 HU) noise on the trabecular bone: many small crush steps (veins off:
    the numbers below were pinned on the full-grid code before the veins existed)."""
    v = vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, spacing_mm=2.0), veins_seed=None)
    rng = np.random.default_rng(7)
    hu = v.hu.copy()
    m = v.labels == bl.TRAB
    hu[m] = hu[m] + rng.normal(0.0, 25.0, m.sum()).astype(hu.dtype)
    vn = replace(v, hu=hu).with_labels(v.labels.copy(), morphometry=v.morphometry)
    return vn, [t.tip_ijk for t in plan_trajectories(vn)]


def _full_grid_front(st):
    """The front as the full-grid code computed it every step."""
    labels, cavity = st["labels"], st["cavity"]
    outer = ndimage.binary_dilation(~np.isin(labels, BODY))
    return ndimage.binary_dilation(cavity) & ~cavity & np.isin(labels, bl.CANCELLOUS + (bl.DEFECT,)) & ~outer


def _full_grid_contact(st, frag_cols, reach):
    """Contact columns as the full-grid code computed them (cavity run under the endplate holds a crushed voxel)."""
    labels, cavity, gap = st["labels"], st["cavity"], st["gap"]
    out = np.zeros(frag_cols.shape, bool)
    for i, j in np.argwhere(frag_cols):
        z = bl._top_endplate_insert(labels, i, j)
        if z is None:
            continue
        z -= 1
        if not reach[i, j, z]:
            continue
        while z >= 0 and cavity[i, j, z]:
            if not gap[i, j, z]:
                out[i, j] = True
                break
            z -= 1
    return out


def test_incremental_front_matches_full_grid_every_step(noisy_wedge, monkeypatch):
    v, tips = noisy_wedge
    checks = {"crush": 0, "lift": 0}
    crushed0, rebuild0 = bl._Front.crushed, bl._Front.rebuild

    def check(fr):
        np.testing.assert_array_equal(fr.flat, np.flatnonzero(_full_grid_front(fr.st)))
        np.testing.assert_array_equal(fr.contact, _full_grid_contact(fr.st, fr.frag_cols, fr.reach))
        assert np.all(np.diff(fr.flat) > 0)  # sorted, unique: C order as np.argwhere

    def crushed(self, sel_flat):
        crushed0(self, sel_flat)
        check(self)
        checks["crush"] += 1

    def rebuild(self):
        rebuild0(self)
        check(self)
        checks["lift"] += 1

    monkeypatch.setattr(bl._Front, "crushed", crushed)
    monkeypatch.setattr(bl._Front, "rebuild", rebuild)
    r = bl.inflate(v, tips, volume_ml=3.0)
    assert checks["crush"] == r.action.count("crush") == 288
    # rebuilt after each lift, once at the start and after each crush step that reaches the space opened under the plate
    # (the membrane enters it: balloon._membrane_follows)
    assert checks["lift"] >= r.action.count("lift") + 1 == 3


def test_noisy_wedge_same_as_full_grid_code(noisy_wedge):
    """Numbers re-pinned 2026-11-30 when the membrane's shape (envelope_levels) and the device table came in
    (issue 20); the incremental front itself is checked against the full-grid definition above. Re-pinned again
    2026-11-30 for the hinged plate (balloon.hinged_target) and the fragment's band: the same steps, crushed bone and
    pressures; cavity 762 -> 802 (the gap under the plate now meets the balloons), shell 441 -> 387, lifted voxels
    360 -> 272 and 200 -> 113 (each column by its share of the depression), HU sum 2246630.91 -> 2248659.64.
    Re-pinned 2026-12-01 (issue 20, cavity bookkeeping): the membrane enters the space the plate opens next to it and
    the cavity is the membrane's space alone (the rest of the opened space is ``fracture_gap``, 120 and 36 voxels):
    the same steps, crushed bone and pressures; cavity 802 -> 682 and 627 -> 591, shell 387 -> 249 (spread around the
    membrane's space, not the gap), HU sum 2248659.64 -> 2248648.46. With model/heights on CT endplates merged (the
    fragment's depression reads 8.67 mm, not 8.0): lifted voxels 272 -> 285 and 113 -> 118, gap 120 -> 116, HU sum
    -> 2248817.89; steps, crushed bone, pressures and cavities unchanged. Re-pinned 2026-12-01 (issue 23: the
    morphometry's default endplate surfaces set the fragment's measured depression): shell 249 -> 252, gap 116 -> 126
    and 36 -> 63, lifted voxels 285 -> 295 and 118 -> 148, HU sum -> 2248077.01; steps, crushed bone, pressures and
    cavities unchanged. Re-pinned 2026-12-01 (issue 23's wall curve: the morphometry's walls, and so its Genant
    positions, move): shell 252 -> 249, gap 126 -> 133 and 63 -> 36, lifted voxels 295 -> 255 and 148 -> 97, HU sum
    -> 2247572.69; steps, crushed bone, pressures and cavities unchanged."""
    v, tips = noisy_wedge
    r = bl.inflate(v, tips, volume_ml=3.0)
    assert len(r.action) == 292 and r.action.count("lift") == 2
    assert "rated shape" in r.stop_reason
    assert int(r.cavity.sum()) == 682 and int(r.shell.sum()) == 249 and int(r.fracture_gap.sum()) == 133
    assert int(r.lift_columns_vox.sum()) == 255
    assert r.crushed_bone_m3 == pytest.approx(3.394297497123479e-07, rel=1e-12)
    assert float(r.pressure_pa.sum()) == pytest.approx(359100647.0086806, rel=1e-12)
    assert float(r.pressure_pa.max()) == pytest.approx(4242831.0, rel=1e-12)
    assert float(r.hu.astype(float).sum()) == pytest.approx(2247572.6945648193, rel=1e-12)

    rp = bl.inflate(v, tips, volume_ml=None, max_pressure_pa=2.5e6)
    assert len(rp.action) == 269 and rp.action.count("lift") == 1
    assert int(rp.cavity.sum()) == 591 and int(rp.lift_columns_vox.sum()) == 97 and int(rp.fracture_gap.sum()) == 36
    assert rp.crushed_bone_m3 == pytest.approx(2.7299651853740216e-07, rel=1e-12)
    assert float(rp.pressure_pa.sum()) == pytest.approx(284167668.5920139, rel=1e-12)
