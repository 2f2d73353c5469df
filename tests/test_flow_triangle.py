"""The saturation Newton step's triangular solve (physics/flow._LowerTriangle, issue 26) against scipy's
``spsolve_triangular`` on the matrix built from coordinates, as flow.py built it before: the same bits."""

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.physics.flow import _LowerTriangle


def test_lower_triangle_gives_spsolve_triangulars_bits_and_solves_the_system():
    rng = np.random.default_rng(3)
    n = 400
    rows = rng.integers(1, n, 1500)
    key = np.unique(rows * n + (rows * rng.random(rows.size)).astype(int))  # col < row, no duplicates
    rows, cols = key // n, key % n
    tri = _LowerTriangle(rows, cols, n)
    for _ in range(3):  # new values on the same pattern, as in the Newton iteration
        off, diag, b = -rng.random(rows.size), 0.5 + rng.random(n), rng.standard_normal(n)
        j = sp.csr_matrix((np.concatenate([off, diag]), (np.concatenate([rows, np.arange(n)]),
                                                         np.concatenate([cols, np.arange(n)]))), shape=(n, n))
        ref = spla.spsolve_triangular(j, b, lower=True)
        x = tri.solve(off, diag, b.copy())
        assert np.array_equal(x, ref)
        assert np.abs(j @ x - b).max() < 1e-10 * np.abs(b).max()
