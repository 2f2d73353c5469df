"""Voxel elasticity benchmark: vertaug (matrix-free GMG-PCG) vs scikit-fem + pyamg vs CalculiX ccx, same model.

Model: an n^3 block of 0.5 mm voxels with a heterogeneous modulus (smoothed Gaussian random field mapped to
50 MPa .. 5 GPa, contrast 100, quantised to 32 log-spaced levels so that ccx can hold one material per level),
nu = 0.3, compressed between bonded platens (bottom face fixed, top face u_z = -1 % of the height, u_x = u_y = 0).
All three solvers use full-integration 8-node hexahedra (ccx C3D8), so their stiffness must agree.

Each solver runs in its own subprocess; its peak resident memory comes from os.wait4 (ru_maxrss) and the
memory before the solve (model built, imports done) is subtracted to give solver bytes per voxel.

Setup: pip install scikit-fem (extra "bench"); apt-get update && apt-get install -y calculix-ccx.
Usage:  python benchmarks/bench_mechanics.py --n 100 --skfem-n 32 --ccx-n 64
        python benchmarks/bench_mechanics.py --phantom 2 1 0.5     (phantom mesh convergence)
        python benchmarks/bench_mechanics.py --states 1            (Belkoff table: intact / fractured / VP / KP)
        (peers that would not fit in memory or in 10 minutes are run at the sizes given and reported as such)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one BLAS thread for our solver (its element products are sgemm calls): a threaded BLAS on a shared 2-core machine
# spins while it waits for a core, which inflates CPU time ~15x at load 14 (measured); ccx keeps OMP_NUM_THREADS
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

H_M = 0.5e-3
NU = 0.3
STRAIN = 0.01
N_LEVELS = 32


def block_modulus(n: int, seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.standard_normal((n, n, n)), 2.0, mode="wrap")
    f = (f - f.mean()) / f.std()
    levels = np.logspace(np.log10(50e6), np.log10(5e9), N_LEVELS)
    idx = np.clip(np.round((np.clip(f, -2.5, 2.5) + 2.5) / 5.0 * (N_LEVELS - 1)), 0, N_LEVELS - 1).astype(int)
    return levels[idx]


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_ours(e: np.ndarray, backend: str) -> dict:
    import scipy.sparse.linalg  # noqa: F401  (the solver's imports are done before the memory baseline)

    from vertaug.physics import fe_solvers  # noqa: F401
    from vertaug.physics import mechanics as mech

    before = _rss_bytes()
    t0 = time.perf_counter()
    c0 = time.process_time()
    r = mech.solve_stiffness(
        e,
        (H_M,) * 3,
        nu=NU,
        load_case=mech.compression_between_end_caps(strain=STRAIN),
        backend=backend,
        fields=False,
    )
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "stiffness_n_per_mm": r.stiffness_n_per_mm,
        "time_s": total,
        "cpu_s": cpu,
        "setup_s": r.setup_time_s,
        "solve_s": r.solve_time_s,
        "iterations": r.iterations,
        "rss_before": before,
        "traced_peak_bytes": r.peak_memory_bytes,
    }


def run_skfem(e: np.ndarray) -> dict:
    import pyamg
    import scipy.sparse.linalg as spla
    from skfem import Basis, BilinearForm, ElementHex1, ElementVector, MeshHex, asm
    from skfem.helpers import ddot, sym_grad, trace

    before = _rss_bytes()
    n = e.shape[0]
    t0 = time.perf_counter()
    c0 = time.process_time()
    x = np.linspace(0.0, n * H_M * 1e3, n + 1)  # mm, so E in MPa gives N/mm
    mesh = MeshHex.init_tensor(x, x, x)
    basis = Basis(mesh, ElementVector(ElementHex1()))
    centre = mesh.p[:, mesh.t].mean(axis=1) / (H_M * 1e3)
    ijk = np.floor(centre).astype(int)
    e_elem = e[ijk[0], ijk[1], ijk[2]] / 1e6  # MPa
    lam_f, mu_f = NU / ((1 + NU) * (1 - 2 * NU)), 1 / (2 * (1 + NU))

    @BilinearForm
    def elasticity(u, v, w):
        eu, ev = sym_grad(u), sym_grad(v)
        return w["E"] * (2 * mu_f * ddot(eu, ev) + lam_f * trace(eu) * trace(ev))

    e_field = np.repeat(e_elem[:, None], basis.X.shape[-1], axis=1)
    k = asm(elasticity, basis, E=e_field).tocsr()
    t_asm = time.perf_counter() - t0
    z = mesh.p[2]
    height = n * H_M * 1e3
    nodal = basis.nodal_dofs  # (3, n_nodes)
    bottom, top = np.isclose(z, 0.0), np.isclose(z, height)
    d_all = np.concatenate([nodal[:, bottom].ravel(), nodal[:, top].ravel()])
    u = np.zeros(k.shape[0])
    u[nodal[2, top]] = -STRAIN * height
    free = np.setdiff1d(np.arange(k.shape[0]), d_all)
    b = -(k @ u)[free]
    a = k[free][:, free].tocsr()
    p = mesh.p[:, :] / (H_M * 1e3)
    modes = np.zeros((3, p.shape[1], 6))
    for c in range(3):
        modes[c, :, c] = 1.0
    modes[0, :, 3], modes[1, :, 3] = -p[1], p[0]
    modes[1, :, 4], modes[2, :, 4] = -p[2], p[1]
    modes[0, :, 5], modes[2, :, 5] = p[2], -p[0]
    bmat = np.zeros((k.shape[0], 6))
    for c in range(3):
        bmat[nodal[c]] = modes[c]
    ml = pyamg.smoothed_aggregation_solver(
        a, B=bmat[free], symmetry="symmetric", max_coarse=1000, coarse_solver="splu"
    )
    its = []
    sol, _info = spla.cg(
        a, b, rtol=1e-8, M=ml.aspreconditioner(), callback=lambda _: its.append(1), maxiter=500
    )
    u[free] = sol
    f = k @ u
    force = -f[nodal[2, top]].sum()
    total = time.perf_counter() - t0
    return {
        "stiffness_n_per_mm": force / (STRAIN * height),
        "time_s": total,
        "cpu_s": time.process_time() - c0,
        "assembly_s": t_asm,
        "iterations": len(its),
        "rss_before": before,
    }


def _write_ccx(e: np.ndarray, path: str, solver: str) -> None:
    n = e.shape[0]
    hmm = H_M * 1e3
    nn = n + 1
    ii, jj, kk = np.meshgrid(np.arange(nn), np.arange(nn), np.arange(nn), indexing="ij")
    nid = (ii * nn + jj) * nn + kk + 1
    with open(path, "w") as fh:
        fh.write("*HEADING\nvertaug benchmark block\n*NODE, NSET=NALL\n")
        coords = np.column_stack([nid.ravel(), ii.ravel() * hmm, jj.ravel() * hmm, kk.ravel() * hmm])
        np.savetxt(fh, coords, fmt="%d, %.6f, %.6f, %.6f")
        ei, ej, ek = np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij")
        eid = (ei * n + ej) * n + ek + 1
        corner = lambda a, b, d: ((ei + a) * nn + (ej + b)) * nn + (ek + d) + 1
        conn = np.stack(
            [eid]
            + [
                corner(*c)
                for c in [
                    (0, 0, 0),
                    (1, 0, 0),
                    (1, 1, 0),
                    (0, 1, 0),
                    (0, 0, 1),
                    (1, 0, 1),
                    (1, 1, 1),
                    (0, 1, 1),
                ]
            ],
            axis=-1,
        )
        levels = np.unique(e)
        for m, level in enumerate(levels):
            sel = conn[e == level]
            fh.write(f"*ELEMENT, TYPE=C3D8, ELSET=E{m}\n")
            np.savetxt(fh, sel, fmt="%d", delimiter=", ")
        for m, level in enumerate(levels):
            fh.write(f"*MATERIAL, NAME=M{m}\n*ELASTIC\n{level / 1e6:.6f}, {NU}\n")
            fh.write(f"*SOLID SECTION, ELSET=E{m}, MATERIAL=M{m}\n")
        for name, plane in (("NBOT", 0), ("NTOP", n)):
            fh.write(f"*NSET, NSET={name}\n")
            ids = nid[:, :, plane].ravel()
            pad = (-ids.size) % 16
            rows = np.concatenate([ids, np.full(pad, -1)]).reshape(-1, 16)
            fh.writelines(", ".join(str(v) for v in row if v > 0) + "\n" for row in rows)
        fh.write(f"*STEP\n*STATIC, SOLVER={solver}\n*BOUNDARY\nNBOT, 1, 3, 0.\nNTOP, 1, 2, 0.\n")
        fh.write(f"NTOP, 3, 3, {-STRAIN * n * hmm:.9f}\n*NODE PRINT, NSET=NTOP, TOTALS=ONLY\nRF\n*END STEP\n")


def run_ccx(e: np.ndarray, solver: str, timeout_s: float) -> dict:
    """Runs ccx as a grandchild; the worker reports ccx's own peak RSS from os.wait4."""
    exe = shutil.which("ccx")
    if exe is None:
        raise RuntimeError("ccx not found: apt-get update && apt-get install -y calculix-ccx")
    n = e.shape[0]
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "block.inp")
        t0 = time.perf_counter()
        _write_ccx(e, inp, solver)
        t_write = time.perf_counter() - t0
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
        t0 = time.perf_counter()
        import threading

        proc = subprocess.Popen(
            [exe, "block"], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        timer = threading.Timer(timeout_s, proc.kill)  # ccx itself, not only this worker
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        total = time.perf_counter() - t0
        dat = os.path.join(tmp, "block.dat")
        text = Path(dat).read_text() if os.path.exists(dat) else ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    force = None
    for i, ln in enumerate(lines):
        if "total force" in ln and i + 1 < len(lines):
            force = -float(lines[i + 1].split()[2])
    if force is None:
        raise RuntimeError(f"ccx produced no reaction force (status {status}).")
    return {
        "stiffness_n_per_mm": force / (STRAIN * n * H_M * 1e3),
        "time_s": total,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "input_write_s": t_write,
        "ccx_peak_rss": usage.ru_maxrss * 1024,
        "solver": solver,
    }


def worker(args) -> None:
    e = block_modulus(args.n)
    if args.worker == "ours":
        out = run_ours(e, args.backend)
    elif args.worker == "skfem":
        out = run_skfem(e)
    else:
        out = run_ccx(e, args.ccx_solver, args.timeout - 30.0)
    print("RESULT " + json.dumps(out))


def spawn(kind: str, n: int, extra: list[str], timeout_s: float) -> dict:
    """Run one worker; its own peak RSS comes from os.wait4 (per child, not the max over children)."""
    import threading

    cmd = [sys.executable, __file__, "--worker", kind, "--n", str(n)] + extra
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = status
        out.seek(0)
        text = out.read()
    line = [ln for ln in text.splitlines() if ln.startswith("RESULT ")]
    if not line:
        tail = (
            text.strip().splitlines()[-1] if text.strip() else f"killed after {timeout_s:.0f} s or no output"
        )
        return {"error": tail}
    res = json.loads(line[-1][7:])
    res["peak_rss_children"] = usage.ru_maxrss * 1024
    return res


def phantom_modulus(spacing_mm: float, fracture: str = "none", grade: int = 0):
    """E (Pa) of the L1 phantom's vertebral body (trabecular, cortex, endplate voxels; posterior elements and
    discs excluded) from the materials module; returns (E, body mask)."""
    from vertaug.anatomy.phantom import make_phantom
    from vertaug.model.labels import LABELS
    from vertaug.model.materials import material_maps

    ph = make_phantom(level="L1", fracture=fracture, grade=grade, spacing_mm=spacing_mm, neighbours=False)
    tissue = np.asarray(ph.tissue.data)
    known = np.isin(
        tissue, list(LABELS.values())
    )  # the phantom's posterior-element label is not in the table
    maps = material_maps(np.asarray(ph.ct.data, dtype=float), np.where(known, tissue, 0))
    bone = (np.asarray(ph.body.data) > 0) & np.isin(
        tissue, [LABELS["trabecular"], LABELS["cortex"], LABELS["endplate"]]
    )
    return np.where(bone, maps.E_pa, 0.0), bone


def run_phantom(spacings_mm) -> None:
    """Mesh convergence of the phantom's stiffness (2 mm PMMA caps, bonded) and intact vs grade-2 wedge."""
    import warnings

    from vertaug.physics import mechanics as mech

    lc = mech.compression_between_end_caps(cap_thickness_m=2e-3)
    rows = []
    for h in spacings_mm:
        e, bone = phantom_modulus(h)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = mech.solve_stiffness(e, (h * 1e-3,) * 3, load_case=lc, bone_mask=bone)
        rows.append((h, r))
        print(
            f"L1 phantom intact h={h} mm: {r.n_voxels} voxels, K = {r.stiffness_n_per_mm:.1f} N/mm, "
            f"strength = {mech.strength_n(r):.0f} N, {r.iterations} its, {r.setup_time_s + r.solve_time_s:.1f} s"
        )
    if len(rows) >= 3:
        s = [r.stiffness_n_per_mm for _, r in rows[-3:]]
        order = np.log2(abs(s[0] - s[1]) / abs(s[1] - s[2]))
        print(
            f"observed order (last three spacings) = {order:.2f}; change {rows[-2][0]} -> {rows[-1][0]} mm: "
            f"{100 * (s[2] / s[1] - 1):+.2f} %"
        )
    h = spacings_mm[-1]
    for frac, grade in (("wedge", 2),):
        e, bone = phantom_modulus(h, frac, grade)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = mech.solve_stiffness(e, (h * 1e-3,) * 3, load_case=lc, bone_mask=bone)
        print(
            f"L1 phantom {frac} grade {grade} h={h} mm: K = {r.stiffness_n_per_mm:.1f} N/mm, "
            f"strength = {mech.strength_n(r):.0f} N"
        )
    # Stand-in for VP until the procedure modules exist (NOT a procedure outcome): a centred ellipsoid of PMMA
    # (semi-axes 8 x 6 x 6 mm) inside the fractured body, cement excluded from the strength criterion.
    e0, bone0 = phantom_modulus(h)
    e1, bone1 = phantom_modulus(h, "wedge", 2)
    idx = np.nonzero(bone1)
    centre = [0.5 * (i.min() + i.max()) * h for i in idx]
    x, y, z = np.meshgrid(*[(np.arange(n) + 0.5) * h for n in e1.shape], indexing="ij")
    blob = ((x - centre[0]) / 8) ** 2 + ((y - centre[1]) / 6) ** 2 + ((z - centre[2]) / 6) ** 2 <= 1.0
    blob &= bone1
    e2 = np.where(blob, mech.CEMENT_MODULUS_PA, e1)
    rows = mech.augmentation_table(
        {"intact": e0, "fractured": e1, "cement-core stand-in": e2},
        (h * 1e-3,) * 3,
        bone_masks={"intact": bone0, "fractured": bone1, "cement-core stand-in": bone1 & ~blob},
    )
    print(f"cement stand-in volume {blob.sum() * h**3 / 1e3:.2f} mL")
    for row in rows:
        print(f"  {row.state:<22} K = {row.stiffness_n_per_mm:9.1f} N/mm  strength = {row.strength_n:7.0f} N")


def _top_voxels(r, shape):
    """Input-grid mask of the bone voxels at or above the strength criterion's EES quantile (the top 2 %)."""
    from vertaug.physics import mechanics as mech

    ees = r.effective_strain[r.bone_mask]
    q = np.sort(ees)[min(ees.size - 1, int(ees.size * (1.0 - mech.PISTOIA_CRITICAL_VOLUME)))]
    nx, ny, nz = r.e_pa.shape
    nc = r.cap_layers
    top = np.zeros(shape, bool)
    sl = tuple(slice(o, o + n) for o, n in zip(r.origin_index, (nx, ny, nz - 2 * nc)))
    top[sl] = (r.bone_mask & (r.effective_strain >= q))[:, :, nc : nz - nc]
    return top


def run_states(spacing_mm: float, real: bool = True) -> None:
    """Belkoff 2001 table: stiffness and strength intact / fractured / VP / KP for the grade-2 wedge L1 phantom and
    the bundled real L1, through the landed procedures (defaults) and procedures.stiffness.state_modulus (Voigt cement
    mix, Pistoia over every bone voxel). Each state under the default load case (2 mm PMMA caps cast onto the
    endplates, bonded) and, for comparison, flat caps that touch only the highest points (embed=False)."""
    import warnings

    from scipy import ndimage

    from vertaug.anatomy.phantom import make_phantom
    from vertaug.model.vertebra import vertebra_from_ct, vertebra_from_phantom
    from vertaug.physics import mechanics as mech
    from vertaug.procedures.kyphoplasty import Kyphoplasty, run_kyphoplasty
    from vertaug.procedures.stiffness import state_modulus
    from vertaug.procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty

    s = spacing_mm
    cases = [
        (
            "grade-2 wedge L1 phantom",
            vertebra_from_phantom(make_phantom(level="L1", spacing_mm=s)),
            vertebra_from_phantom(make_phantom(level="L1", fracture="wedge", grade=2, spacing_mm=s)),
        )
    ]
    if real:
        from vertaug.anatomy.io import load_ct, load_labels
        from vertaug.demo import example_paths

        p = example_paths()
        ct = load_ct(p["ct"])
        v = vertebra_from_ct(
            ct, load_labels(p["seg"], ct), "L1", body=load_labels(p["body"], ct), spacing_mm=s
        )
        cases.append((f"bundled real L1 (Genant grade {v.morphometry.genant_grade}: no fracture)", v, None))
    for title, intact, fractured in cases:
        t0 = time.perf_counter()
        treated = fractured if fractured is not None else intact
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vp = run_vertebroplasty(treated, Vertebroplasty())
            kp = run_kyphoplasty(treated, Kyphoplasty())
        vox_ml = float(np.prod(treated.spacing_m)) * 1e6
        print(
            f"\n{title}, {s} mm voxels (procedures {time.perf_counter() - t0:.0f} s); VP {vp.cement_fraction.sum() * vox_ml:.2f}"
            f" mL cement, KP {kp.cement_fraction.sum() * vox_ml:.2f} mL"
        )
        states = {"intact": state_modulus(intact)}
        if fractured is not None:
            states["fractured"] = state_modulus(fractured)
        states["VP"] = state_modulus(vp.model_after, vp.cement_fraction)
        states["KP"] = state_modulus(kp.model_after, kp.cement_fraction)
        cement = {"VP": vp.cement_fraction >= 0.01, "KP": kp.cement_fraction >= 0.01}
        dist = {k: ndimage.distance_transform_edt(~c) for k, c in cement.items()}
        for embed in (True, False):
            lc = mech.compression_between_end_caps(cap_thickness_m=2e-3, embed=embed)
            print(
                f"  load case: 2 mm PMMA caps, bonded, {'cast onto the endplates (default)' if embed else 'flat (embed=False)'}"
            )
            for name, (e, bone) in states.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = mech.solve_stiffness(e, treated.spacing_m, load_case=lc, bone_mask=bone)
                f_fail = mech.strength_n(r)
                extra = ""
                if name in cement:
                    d = dist[name][_top_voxels(r, e.shape)]
                    nc = r.cap_layers
                    box = tuple(slice(o, o + n) for o, n in zip(r.origin_index, r.e_pa[:, :, nc:-nc].shape))
                    frac = (vp if name == "VP" else kp).cement_fraction[box]
                    ees = r.effective_strain[:, :, nc:-nc]
                    bone = r.bone_mask[:, :, nc:-nc]
                    former = np.sort(
                        ees[bone & (frac < 0.5)]
                    )  # the mask before this change: bone with f < 0.5
                    f_former = (
                        r.reaction_force_n * mech.PISTOIA_CRITICAL_STRAIN / former[int(former.size * 0.98)]
                    )
                    extra = (
                        f"; top-2 % voxels: {100 * np.mean(d <= 1.5):.0f} % within 1 voxel of cement, median "
                        f"distance {np.median(d):.1f} voxels; {int(bone.sum())} bone voxels; former mask "
                        f"(cement < 50 %, {former.size} voxels): {f_former:.0f} N"
                    )
                print(
                    f"    {name:<10} K = {r.stiffness_n_per_mm:9.0f} N/mm  strength = {f_fail:6.0f} N  "
                    f"(filler {r.embedded_voxels} voxels, {r.iterations} its{extra})"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="voxels per edge for our solver")
    ap.add_argument("--skfem-n", type=int, default=32, help="size for scikit-fem (0 skips)")
    ap.add_argument("--ccx-n", type=int, default=48, help="size for ccx (0 skips)")
    ap.add_argument("--ccx-solver", default="SPOOLES", help="SPOOLES (exact) or 'ITERATIVE CHOLESKY'")
    ap.add_argument("--backend", default="gmg")
    ap.add_argument("--timeout", type=float, default=540.0, help="seconds per solver run")
    ap.add_argument("--worker", choices=["ours", "skfem", "ccx"])
    ap.add_argument(
        "--phantom", type=float, nargs="*", help="instead: L1 phantom stiffness at these spacings (mm)"
    )
    ap.add_argument(
        "--states",
        type=float,
        metavar="SPACING_MM",
        help="instead: Belkoff table intact / fractured / VP / KP (phantom and real L1) at this spacing (mm)",
    )
    ap.add_argument("--no-real", action="store_true", help="with --states: the phantom only")
    args = ap.parse_args()
    if args.states:
        run_states(args.states, real=not args.no_real)
        return
    if args.phantom:
        run_phantom(args.phantom)
        return
    if args.worker:
        worker(args)
        return
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, OMP_NUM_THREADS(ccx)={os.environ.get('OMP_NUM_THREADS', '2')}"
    )
    sizes = sorted({args.n, args.skfem_n, args.ccx_n} - {0})
    ours = {}
    for n in sizes:
        ours[n] = spawn("ours", n, ["--backend", args.backend], args.timeout)
    peers = []
    last = ""
    if args.skfem_n:
        peers.append(("scikit-fem+pyamg", args.skfem_n, spawn("skfem", args.skfem_n, [], args.timeout)))
    if args.ccx_n:
        peers.append(
            (
                f"ccx {args.ccx_solver}",
                args.ccx_n,
                spawn(
                    "ccx",
                    args.ccx_n,
                    ["--ccx-solver", args.ccx_solver, "--timeout", str(args.timeout)],
                    args.timeout + 30.0,
                ),
            )
        )
    print(
        f"\n{'solver':<24}{'voxels':>10}{'K N/mm':>14}{'time s':>9}{'CPU s':>9}{'its':>5}{'peak RSS MB':>13}"
        f"{'solver B/vox':>13}"
    )
    for n, r in ours.items():
        if "error" in r:
            print(f"{'vertaug ' + args.backend:<24}{n**3:>10}  error: {r['error']}")
            continue
        solver_b = (r["peak_rss_children"] - r["rss_before"]) / n**3
        print(
            f"{'vertaug ' + args.backend:<24}{n**3:>10}{r['stiffness_n_per_mm']:>14.2f}{r['time_s']:>9.2f}"
            f"{r['cpu_s']:>9.2f}{r['iterations']:>5}{r['peak_rss_children'] / 2**20:>13.0f}{solver_b:>13.0f}"
            f"   (numpy peak during solve {r['traced_peak_bytes'] / n**3:.0f} B/voxel)"
        )
    for name, n, r in peers:
        if "error" in r:
            print(f"{name:<24}{n**3:>10}  error: {r['error']}")
            continue
        rss = r.get("ccx_peak_rss", r["peak_rss_children"])
        before = r.get("rss_before", 0)
        mine = ours.get(n, {})
        print(
            f"{name:<24}{n**3:>10}{r['stiffness_n_per_mm']:>14.2f}{r['time_s']:>9.2f}{r['cpu_s']:>9.2f}"
            f"{r.get('iterations', 0):>5}"
            f"{rss / 2**20:>13.0f}{(rss - before) / n**3:>13.0f}"
        )
        if "error" not in mine:
            d = mine["stiffness_n_per_mm"] / r["stiffness_n_per_mm"] - 1
            mine_b = mine["peak_rss_children"] - mine["rss_before"]
            print(
                f"   ratio at {n}^3: stiffness ours/peer - 1 = {100 * d:+.4f} %, time peer/ours = "
                f"{r['time_s'] / mine['time_s']:.1f}x wall, {r['cpu_s'] / mine['cpu_s']:.1f}x CPU; solver memory "
                f"peer/ours = {(rss - before) / mine_b:.1f}x"
            )
            if name.startswith("ccx"):
                last = (f"speedup vs ccx: {r['cpu_s'] / mine['cpu_s']:.1f}x (CPU time at {n}^3; wall "
                        f"{r['time_s'] / mine['time_s']:.1f}x; load average {os.getloadavg()[0]:.1f} at the end)")
    if last:
        print(last)


if __name__ == "__main__":
    main()
