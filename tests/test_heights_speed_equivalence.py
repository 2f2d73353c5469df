"""Height measurement, fourth performance pass (docs/performance.md "Fourth pass, heights"): each vectorised piece
gives what the per-column code gave, and a level measured again unchanged is read back.

The per-column references below are the code they replaced (commit 4632a01), kept here as the definition."""

import numpy as np
import pytest

from vertaug.anatomy import morphometry as M
from vertaug.anatomy.endplates import LOCAL_TERMS, EndplateSurface, _edge_fits, edge_model


def _central_run_ref(col):
    if not col.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate([[False], col, [False]]).astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - 1)


@pytest.mark.parametrize("p_true", [0.05, 0.5, 0.8, 1.0])
def test_central_runs_equal_per_column(p_true):
    cols = np.random.default_rng(3).random((2000, 19)) < p_true  # ties of equal runs are common at 0.5
    lo, hi, found = M._central_runs(cols)
    got = [(int(a), int(b)) if f else None for a, b, f in zip(lo, hi, found)]
    assert got == [_central_run_ref(c) for c in cols]


def test_edge_fits_equal_stacked_solve():
    """The closed-form normal equations against the einsum + np.linalg.solve of every (e, sigma, column)."""
    rng = np.random.default_rng(5)
    x = np.arange(-7.0, 6.0, 0.6)
    A = edge_model(x, np.linspace(-3.0, 3.0, 41), np.array([0.9, 1.3, 2.0]), 3.0)
    y = 40.0 + 300.0 * (x[None, :] < rng.uniform(-2, 2, (60, 1))) + rng.normal(0, 20, (60, x.size))
    w = (x[None, :] >= rng.uniform(-8, -4, (60, 1))).astype(float)
    rss, peak = _edge_fits(A, y, w)
    G = np.einsum("esxi,cx,esxj->escij", A, w, A) + 1e-9 * np.eye(3)
    rhs = np.einsum("esxi,cx->esci", A, w * y)
    coef = np.linalg.solve(G, rhs[..., None])[..., 0]
    ref_rss = (w * y * y).sum(axis=1) - (coef * rhs).sum(axis=-1)
    np.testing.assert_allclose(rss, ref_rss, rtol=1e-9, atol=1e-6 * float(np.abs(ref_rss).max()))
    np.testing.assert_allclose(peak, np.abs(coef[..., 1]) + np.maximum(coef[..., 2], 0.0), rtol=1e-7, atol=1e-6)


def test_surface_positions_bit_identical_to_at():
    rng = np.random.default_rng(2)
    u, x = rng.uniform(0, 1, 300), rng.uniform(-1, 1, 300)
    whole = EndplateSurface(tuple(rng.normal(0, 5, 8)), np.eye(8), 0.0, 0.1, 300, 300, "CT edge")
    local = EndplateSurface(tuple(rng.normal(0, 5, 4)), np.eye(4), 0.0, 0.1, 30, 30, "CT edge", LOCAL_TERMS, 0.5)
    for s in (whole, local):
        assert np.array_equal(s.positions(u, x), [s.at(a, b)[0] for a, b in zip(u, x)])


def test_measure_body_heights_kept_by_content():
    """A box-shaped body with its CT: the same content measured again is the kept result; one CT voxel changed
    inside the level's box is measured anew."""
    body = np.zeros((30, 36, 30), bool)
    body[6:24, 6:30, 7:23] = True
    ct = np.where(body, 250.0, 20.0).astype(np.float32)
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    M._KEPT_HEIGHTS.clear()
    first = M.measure_body_heights(body, aff, (0, 0, 1), (0, 1, 0), ct=ct)
    # 16 slices of 2 mm; a bare step (no endplate, no blur) reads 0.62 mm out per face: the numbers of 4632a01
    assert (first.anterior_mm, first.middle_mm, first.posterior_mm) == pytest.approx((33.25,) * 3, abs=1e-9)
    assert (first.ap_depth_mm, first.width_mm) == pytest.approx((24.25, 18.25), abs=1e-9)
    assert M.measure_body_heights(body, aff, (0, 0, 1), (0, 1, 0), ct=ct.copy()) is first
    ct[15, 18, 15] += 1.0
    again = M.measure_body_heights(body, aff, (0, 0, 1), (0, 1, 0), ct=ct)
    assert again is not first and len(M._KEPT_HEIGHTS) == 2
