"""Benchmark (an experiment for the next pass): which coarse space the KP's late pressure systems need.

Run:  python benchmarks/bench_demo_fill.py capture DIR          (the demo's VP and KP injections, once)
      python benchmarks/bench_coarse_space.py DIR [--solves 10,30,36,40,55] [--theta 0.1]

Replays the demo's KP injection (``DIR/inject_1.pkl``; ``--vp`` the VP's ``inject_0.pkl``) and keeps the pressure
systems of the solves named by ``--solves``. On each it counts the CG iterations to ||r|| <= 1e-7 ||b|| (float64 PCG
from zero) of:

* ours: the production V-cycle (physics/gmg_pressure.py: 2 x 2 x 2 blocks, Chebyshev, over-correction 2);
* peer: pyamg smoothed aggregation (the field's algebraic multigrid) as the CG preconditioner;
* two prototypes with the same plain V-cycle (two damped-Jacobi sweeps, omega 0.6, before and after; piecewise-
  constant prolongation; LU at <= 1000 unknowns), whose aggregates differ only in the rule:
  ``blocks``: the 2 x 2 x 2 blocks of the level's grid, as ours;
  ``split``:  each block split into the connected components of its strong couplings
  (-a_ij >= theta sqrt(a_ii a_jj)), at every level (a coarse unknown keeps its block's grid position).

What it showed on 2026-12-02 (docs/performance.md, sixth pass): on the KP's solves 36-55 the blocks take 98-105
iterations (ours 72-84 with its Chebyshev), the split 29-31; on solves 10-30 48 -> 28, on the VP 26 -> 18. The
pockets of cement in the cavity that hold the slow modes stay separate unknowns on every level only with the split.
The prototype is Python on CSR matrices: iterations are its figure, not seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
from scipy.sparse.csgraph import connected_components  # noqa: E402

RTOL = 1e-7
MAX_COARSE = 1000
JACOBI_OMEGA = 0.6
SWEEPS = 2


def capture_systems(pkl: Path, wanted: set[int]) -> list[tuple[int, sp.csr_matrix, np.ndarray, np.ndarray]]:
    """Replay one captured injection; (solve index, A, b, grid coordinates of the unknowns) of the wanted solves."""
    import cloudpickle

    from vertaug.physics import flow, solvers

    args, kwargs = cloudpickle.loads(pkl.read_bytes())
    kept, count = [], [0]
    original = solvers.PressureSolver._solve_gmg

    def keeping(self, A, b, x0, voxels):
        if count[0] in wanted:
            shape, idx = voxels
            kept.append((count[0], sp.csr_matrix(A, copy=True), np.array(b, dtype=float),
                         np.stack(np.unravel_index(np.asarray(idx), tuple(shape)), axis=1)))
        count[0] += 1
        return original(self, A, b, x0, voxels)

    solvers.PressureSolver._solve_gmg = keeping
    try:
        flow.inject(*args, **kwargs)
    finally:
        solvers.PressureSolver._solve_gmg = original
    return kept


def pcg_iterations(A, b: np.ndarray, precondition, max_iterations: int = 400) -> int | None:
    """Float64 PCG from zero to ||r|| <= RTOL ||b||: the iterations, or None when it did not get there."""
    x, r = np.zeros_like(b), b.copy()
    z = precondition(r)
    p, rz, stop = z.copy(), r @ z, RTOL * np.linalg.norm(b)
    for k in range(1, max_iterations + 1):
        q = A @ p
        alpha = rz / (p @ q)
        x += alpha * p
        r -= alpha * q
        if np.linalg.norm(r) <= stop:
            return k
        z = precondition(r)
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return None


def aggregates(A: sp.csr_matrix, coords: np.ndarray, theta: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(aggregate of each unknown, grid position of each aggregate): the 2 x 2 x 2 blocks of ``coords``, split into
    the components of their strong couplings when ``theta`` is given."""
    block_coords = coords // 2
    _, block = np.unique(block_coords, axis=0, return_inverse=True)
    block = block.ravel()
    if theta is None:
        label = block
    else:
        c, d = A.tocoo(), A.diagonal()
        strong = ((c.row != c.col) & (-c.data >= theta * np.sqrt(d[c.row] * d[c.col]))
                  & (block[c.row] == block[c.col]))
        graph = sp.csr_matrix((np.ones(int(strong.sum())), (c.row[strong], c.col[strong])), shape=A.shape)
        label = connected_components(graph, directed=False)[1]
    positions = np.zeros((int(label.max()) + 1, 3), dtype=np.int64)
    positions[label] = block_coords
    return label, positions


def prototype(A: sp.csr_matrix, coords: np.ndarray, theta: float | None):
    """(V-cycle preconditioner, unknowns per level) of the aggregation hierarchy (module docstring)."""
    levels = []
    while A.shape[0] > MAX_COARSE:
        label, coords = aggregates(A, coords, theta)
        P = sp.csr_matrix((np.ones(A.shape[0]), (np.arange(A.shape[0]), label)), shape=(A.shape[0], coords.shape[0]))
        levels.append((A, P, JACOBI_OMEGA / A.diagonal()))
        A = (P.T @ A @ P).tocsr()
        if P.shape[1] > 0.9 * P.shape[0]:  # no longer coarsening
            break
    lu = spla.splu(A.tocsc())

    def cycle(k: int, r: np.ndarray) -> np.ndarray:
        if k == len(levels):
            return lu.solve(r)
        Ak, P, dinv = levels[k]
        x = np.zeros_like(r)
        for _ in range(SWEEPS):
            x += dinv * (r - Ak @ x)
        x += P @ cycle(k + 1, P.T @ (r - Ak @ x))
        for _ in range(SWEEPS):
            x += dinv * (r - Ak @ x)
        return x

    return (lambda r: cycle(0, r)), [lv[0].shape[0] for lv in levels] + [A.shape[0]]


def ours(A: sp.csr_matrix, coords: np.ndarray):
    """The production V-cycle of physics/gmg_pressure.py on this system."""
    from vertaug.physics.gmg_pressure import build_hierarchy

    shape = tuple(int(s) for s in coords.max(axis=0) + 1)
    return build_hierarchy(A, shape, np.ravel_multi_index(tuple(coords.T), shape)).vcycle


def pyamg_sa(A: sp.csr_matrix):
    import pyamg

    ml = pyamg.smoothed_aggregation_solver(A, symmetry="symmetric", max_coarse=300, coarse_solver="splu")
    return ml.aspreconditioner(cycle="V").matvec  # one operator, applied at each iteration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="what bench_demo_fill.py capture wrote")
    ap.add_argument("--solves", default="10,30,36,40,55", help="indices of the pressure solves to keep")
    ap.add_argument("--theta", type=float, default=0.1, help="strength threshold of the split")
    ap.add_argument("--vp", action="store_true", help="the VP's injection instead of the KP's")
    a = ap.parse_args()
    pkl = a.folder / ("inject_0.pkl" if a.vp else "inject_1.pkl")
    if not pkl.exists():
        sys.exit(f"{pkl} not found: run `python benchmarks/bench_demo_fill.py capture {a.folder}` first.")
    systems = capture_systems(pkl, {int(s) for s in a.solves.split(",")})
    print(f"{'VP' if a.vp else 'KP'} pressure systems of the demo (1 mm), CG iterations to {RTOL:g}; theta {a.theta:g}")
    totals = {"ours": 0, "pyamg SA": 0, "blocks": 0, "split": 0}
    for k, A, b, coords in systems:
        t0 = time.perf_counter()
        counts = {"ours": pcg_iterations(A, b, ours(A, coords)), "pyamg SA": pcg_iterations(A, b, pyamg_sa(A))}
        sizes = {}
        for name, theta in (("blocks", None), ("split", a.theta)):
            precondition, sizes[name] = prototype(A, coords, theta)
            counts[name] = pcg_iterations(A, b, precondition)
        for name, n in counts.items():
            totals[name] += n if n is not None else 10**6
        print(f"  solve {k:3d} ({A.shape[0]} unknowns): " + ", ".join(f"{n} {c}" for n, c in counts.items())
              + f"; levels blocks {sizes['blocks']}, split {sizes['split']} ({time.perf_counter() - t0:.1f} s)")
    print(f"total iterations: " + ", ".join(f"{n} {c}" for n, c in totals.items()))
    print(f"iterations split vs blocks: {totals['blocks'] / totals['split']:.1f}x fewer; "
          f"split vs ours: {totals['ours'] / totals['split']:.1f}x fewer; split vs pyamg SA: "
          f"{totals['pyamg SA'] / totals['split']:.1f}x fewer")


if __name__ == "__main__":
    main()
