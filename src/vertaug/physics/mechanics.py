"""Vertebral mechanics by voxel finite elements: apparent stiffness and strength in axial compression.

Model (SI units; array axes (right, anterior, superior), spacing in metres):

    div sigma = 0 in the solid voxels (E > 0), sigma = lambda tr(eps) I + 2 mu eps,
    lambda = E nu / ((1 + nu)(1 - 2 nu)),  mu = E / (2 (1 + nu)),

one 8-node trilinear hexahedron per voxel with K_e = E_e K_ref(nu) (see :mod:`vertaug.physics.fe_grid`).

Load case "compression between end caps" (vtkbone style: a named generator of constraints):
optional layers of PMMA (``cap_modulus_pa``) are added below and above the model over its whole footprint and,
with ``embed=True`` (default), cast onto the end surfaces: the void between each voxel column's outermost solid
voxel and the bounding face is filled with cap material, as PMMA potting fills a wedged or concave endplate;
the bottom face z = 0 is held (u_z = 0; with ``lateral="fixed"`` also u_x = u_y = 0, a bonded platen);
the top face z = L is displaced by u_z = -strain L (and u_x = u_y = 0 when bonded). With
``lateral="free"`` (frictionless platens) only the rigid-body motions in the x-y plane are removed.

Outputs:

    F = sum over top-face nodes of -(K u)_z          (compressive reaction force, N)
    S = F / (strain L)                                (apparent stiffness, N/m; reported in N/mm)
    U_e = u_e^T K_e u_e / (2 V_e)                     (element mean strain-energy density)
    EES_e = sqrt(2 U_e / E_e)                         (energy-equivalent strain)
    F_fail = F * eps_crit / EES_(1 - v_crit)          (Pistoia criterion, linear scaling)

Strength follows Pistoia et al. 2002 (Bone 30:842): the load at which ``v_crit`` = 2 % of the bone voxels
exceed an effective strain of ``eps_crit`` = 0.7 %, i.e. F times eps_crit over the 98th percentile of EES;
as implemented in Numerics88 n88tools ``pistoia.py`` (critical volume 2 %, critical strain 0.007, EES from
the strain energy density). The criterion was calibrated for micro-FE of tissue; applied here to continuum
voxels with apparent moduli it is an index of the load at yield onset, comparable between states of one
vertebra (intact / fractured / VP / KP), not an absolute prediction. The criterion counts bone voxels
only (``bone_mask``; caps are never counted; pass the mask without cement for augmented models).

Bad input and load-path rules:

* E must be a finite 3-D array with E >= 0; E == 0 marks void. Negative, NaN or infinite moduli raise
  :class:`~vertaug.errors.InvalidValueError`.
* The model is cropped to the bounding box of its solid voxels (so the loaded faces touch bone).
* Solid voxels are grouped into face-connected (6-neighbour) components. Only components that touch both
  the bottom and the top layer carry load; all other components (floating islands, e.g. a cement island
  outside the bone, or fragments attached to one face only) are dropped with a ``UserWarning`` stating the
  dropped fraction. No component spanning the faces raises :class:`~vertaug.errors.EmptyMaskError`.
"""

from __future__ import annotations

import tracemalloc
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from vertaug.errors import EmptyMaskError, InvalidValueError, ParameterError, check_range
from vertaug.physics.fe_grid import Material, VoxelOperator, lame_factors, strain_matrix

__all__ = [
    "CEMENT_MODULUS_PA",
    "PISTOIA_CRITICAL_STRAIN",
    "PISTOIA_CRITICAL_VOLUME",
    "LoadCase",
    "MechanicsResult",
    "StateMechanics",
    "augmentation_table",
    "compression_between_end_caps",
    "critical_effective_strain",
    "export_vtk",
    "solve_stiffness",
    "strength_n",
]

CEMENT_MODULUS_PA = (
    1937e6  # PMMA cement, 1937 +/- 478 MPa, ISO 5833 test (docs/references.md) [V]
)
CEMENT_NU = 0.3  # typical PMMA Poisson ratio [M]
PISTOIA_CRITICAL_STRAIN = 0.007  # Pistoia et al. 2002 Bone 30:842; n88tools pistoia.py default [V]
PISTOIA_CRITICAL_VOLUME = 0.02  # 2 % of bone voxels (same sources) [V]
BACKENDS = ("auto", "gmg", "amg", "cupy")
AUTO_GMG_MIN_VOXELS = 0  # gmg measured faster than amg at every size tried (docs/mechanics.md)


@dataclass(frozen=True)
class LoadCase:
    """Constraints of an axial compression test (axis 2 = superior)."""

    name: str = "compression_between_end_caps"
    strain: float = 0.01
    lateral: str = "fixed"
    cap_thickness_m: float = 0.0
    cap_modulus_pa: float = CEMENT_MODULUS_PA
    cap_nu: float = CEMENT_NU
    embed: bool = True

    def __post_init__(self):
        check_range("strain", self.strain, 1e-9, 0.2, "", "give the nominal compressive strain, e.g. 0.01.")
        if self.lateral not in ("fixed", "free"):
            raise ParameterError(
                f"Parameter lateral={self.lateral!r} is not known.",
                "use 'fixed' (bonded platens) or 'free' (frictionless platens).",
            )
        check_range("cap_thickness_m", self.cap_thickness_m, 0.0, 0.05, "m")
        check_range("cap_modulus_pa", self.cap_modulus_pa, 1e6, 1e12, "Pa")
        check_range("cap_nu", self.cap_nu, 0.0, 0.49)

    def cap_layers(self, hz_m: float) -> int:
        return round(self.cap_thickness_m / hz_m)


def compression_between_end_caps(
    strain: float = 0.01,
    cap_thickness_m: float = 0.0,
    lateral: str = "fixed",
    cap_modulus_pa: float = CEMENT_MODULUS_PA,
    cap_nu: float = CEMENT_NU,
    embed: bool = True,
) -> LoadCase:
    """Axial compression of the model between two platens, optionally through PMMA end caps.

    Bottom face held, top face moved down by ``strain`` x height (axis 2). ``lateral="fixed"`` bonds the faces
    (u_x = u_y = 0, as with potted specimens); ``"free"`` lets them slide (uniaxial stress in a homogeneous block,
    stiffness exactly E A / L). ``cap_thickness_m`` of PMMA (rounded to whole voxel layers) is added below and above.
    With caps and ``embed=True`` (default) the caps are cast onto the end surfaces, as PMMA potting is: in every
    voxel column holding solid, the void between the outermost solid voxel and the model's bounding face is filled
    with cap material, so a wedged, tilted or concave endplate is loaded over its whole surface. ``embed=False``
    keeps flat cap layers only (the platen then touches the highest points of the end surface and nothing else).
    """
    return LoadCase(
        "compression_between_end_caps", strain, lateral, cap_thickness_m, cap_modulus_pa, cap_nu, embed
    )


@dataclass(frozen=True)
class MechanicsResult:
    """Solution of one load case. Element arrays cover the solved model (cropped, with caps)."""

    stiffness_n_per_mm: float
    reaction_force_n: float
    applied_displacement_m: float
    height_m: float
    displacement_m: np.ndarray = field(repr=False)  # (nx+1, ny+1, nz+1, 3) nodal displacement
    strain: np.ndarray = field(repr=False)  # (nx, ny, nz, 6) at element centres: exx eyy ezz gxy gyz gzx
    von_mises_pa: np.ndarray = field(repr=False)  # (nx, ny, nz) at element centres
    effective_strain: np.ndarray = field(repr=False)  # (nx, ny, nz) EES = sqrt(2 U / E), element mean U
    e_pa: np.ndarray = field(repr=False)  # (nx, ny, nz) the modulus field solved (with caps)
    bone_mask: np.ndarray = field(repr=False)  # (nx, ny, nz) voxels counted by the strength criterion
    spacing_m: tuple
    origin_index: tuple  # index in the input array of element (0, 0, cap_layers)
    cap_layers: int
    load_case: LoadCase
    backend: str
    iterations: int
    residual: float
    setup_time_s: float
    solve_time_s: float
    peak_memory_bytes: int  # peak of numpy allocations during setup + solve (tracemalloc)
    n_voxels: int  # solid voxels solved (with caps)
    n_dofs: int
    dropped_voxels: int
    embedded_voxels: int  # void voxels filled with cap material by the embedding (load_case.embed)
    equilibrium_error: float  # |F_top - F_bottom| / F_top
    info: dict = field(default_factory=dict, repr=False)

    @property
    def bytes_per_voxel(self) -> float:
        return self.peak_memory_bytes / max(1, self.n_voxels)


def _validate_modulus(e_pa) -> np.ndarray:
    e = np.asarray(e_pa)
    if e.ndim != 3:
        raise InvalidValueError(
            f"E_pa has {e.ndim} dimensions; a 3-D voxel array is needed.",
            "pass the modulus field with axes (right, anterior, superior).",
        )
    if not np.issubdtype(e.dtype, np.number):
        raise InvalidValueError(f"E_pa has dtype {e.dtype}; moduli must be numbers in Pa.", "cast to float.")
    e = np.asarray(e, dtype=np.float64)  # no copy for float64 input (never written to)
    if not np.all(np.isfinite(e)):
        raise InvalidValueError(
            f"E_pa holds {int(np.count_nonzero(~np.isfinite(e)))} NaN or infinite voxels.",
            "replace them by 0 (void) or a modulus in Pa.",
        )
    if np.any(e < 0):
        raise InvalidValueError(
            f"E_pa holds {int(np.count_nonzero(e < 0))} negative moduli (min {e.min():g} Pa).",
            "moduli must be > 0 for solid voxels and exactly 0 for void.",
        )
    return e


def _validate_spacing(spacing_m) -> tuple:
    s = tuple(np.asarray(spacing_m, dtype=float).ravel())
    if len(s) != 3:
        raise ParameterError(
            f"Parameter spacing_m={spacing_m!r} must hold 3 values.", "give (dx, dy, dz) in m."
        )
    return tuple(
        check_range(f"spacing_m[{i}]", v, 1e-6, 1e-2, "m", "spacing is in metres, e.g. 0.5e-3.")
        for i, v in enumerate(s)
    )


def _load_path(e: np.ndarray) -> tuple[np.ndarray, int]:
    """Keep the face-connected components that touch both z-faces; returns (solid mask kept, dropped count)."""
    solid = e > 0
    labels, n = ndimage.label(solid)
    bottom = np.unique(labels[:, :, 0])
    top = np.unique(labels[:, :, -1])
    spanning = np.intersect1d(bottom[bottom > 0], top[top > 0])
    if spanning.size == 0:
        raise EmptyMaskError(
            f"No bone in the load path: none of the {n} connected solid parts (E > 0) joins the bottom and top faces "
            "(axis 2, superior).",
            "check the modulus field and its axis order (right, anterior, superior), or add end caps "
            "(compression_between_end_caps(cap_thickness_m=...)).",
        )
    keep = np.isin(labels, spanning)
    return keep, int(np.count_nonzero(solid & ~keep))


def _crop_and_cap(e, nu, bone_mask, load_case: LoadCase, hz):
    """Crop to the solid bounding box, keep the load path, add PMMA caps. Returns model arrays and bookkeeping."""
    solid = e > 0
    if not solid.any():
        raise EmptyMaskError("E_pa has no solid voxel (all moduli are 0).", "pass a modulus field with bone.")
    lo = [int(np.flatnonzero(solid.any(axis=tuple(j for j in range(3) if j != a)))[0]) for a in range(3)]
    hi = [int(np.flatnonzero(solid.any(axis=tuple(j for j in range(3) if j != a)))[-1]) + 1 for a in range(3)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    e = e[box]
    nu_arr = np.asarray(nu, dtype=float)
    nu_box = nu_arr[box] if nu_arr.ndim == 3 else nu_arr
    bone = np.ones(e.shape, bool) if bone_mask is None else np.asarray(bone_mask, bool)[box]
    keep, dropped = _load_path(e)
    if dropped:
        warnings.warn(
            f"mechanics: {dropped} solid voxels ({100.0 * dropped / np.count_nonzero(e > 0):.2f} %) are not "
            "face-connected to both loaded faces and were dropped (they carry no load).",
            stacklevel=4,  # at the caller of solve_stiffness (via _fe_problem)
        )
    e = np.where(keep, e, 0.0)
    del keep
    ncap = load_case.cap_layers(hz)
    embedded = 0
    if ncap:
        filler = _embedding(e > 0) if load_case.embed else np.zeros(e.shape, bool)
        embedded = int(np.count_nonzero(filler))
        nx, ny, _ = e.shape
        layer = np.ones((nx, ny, ncap), bool)
        cap = np.concatenate([layer, filler, layer], axis=2)
        del filler
        e = np.concatenate([np.zeros((nx, ny, ncap)), e, np.zeros((nx, ny, ncap))], axis=2)
        e[cap] = load_case.cap_modulus_pa
        bone = np.concatenate([~layer, bone, ~layer], axis=2) & ~cap
        if nu_box.ndim == 3 or abs(float(nu_box) - load_case.cap_nu) > 1e-12:
            nu_full = np.broadcast_to(nu_box, (nx, ny, e.shape[2] - 2 * ncap))
            nu_box = np.concatenate([np.zeros((nx, ny, ncap)), nu_full, np.zeros((nx, ny, ncap))], axis=2)
            nu_box[cap] = load_case.cap_nu
    bone &= e > 0
    return e, nu_box, bone, tuple(lo), ncap, dropped, embedded


def _embedding(solid: np.ndarray) -> np.ndarray:
    """Void voxels between each column's outermost solid voxels and the bottom / top faces (cast cap material)."""
    nz = solid.shape[2]
    column = solid.any(axis=2)
    first = np.argmax(solid, axis=2)
    last = nz - 1 - np.argmax(solid[:, :, ::-1], axis=2)
    z = np.arange(nz)[None, None, :]
    return column[..., None] & ((z < first[..., None]) | (z > last[..., None]))


def _constraints(node_shape, active_bottom: np.ndarray, lateral: str, u_top_m: float):
    """Fixed-DOF mask (NX, NY, NZ, 3) and prescribed values (1, 1, NZ, 3), broadcast over x and y."""
    fixed = np.zeros(node_shape, bool)
    u_d = np.zeros((1, 1) + tuple(node_shape[2:]))
    fixed[:, :, 0, 2] = True
    fixed[:, :, -1, 2] = True
    u_d[:, :, -1, 2] = u_top_m
    if lateral == "fixed":
        fixed[:, :, 0, 0:2] = True
        fixed[:, :, -1, 0:2] = True
        return fixed, u_d
    ii, jj = np.nonzero(active_bottom)
    i0, j0 = ii[0], jj[0]
    fixed[i0, j0, 0, 0:2] = True
    if ii.max() > i0:
        k = int(np.argmax(ii))
        fixed[ii[k], jj[k], 0, 1] = True
    else:
        k = int(np.argmax(jj))
        fixed[ii[k], jj[k], 0, 0] = True
    return fixed, u_d


def _postprocess(op: VoxelOperator, u, e, nu, spacing):
    """Element-centre strain, von Mises stress and energy-equivalent strain (mean element energy)."""
    nx, ny, nz = e.shape
    b0 = strain_matrix((0.0, 0.0, 0.0), spacing)
    vol = float(np.prod(spacing))
    strain = np.zeros((op.n_nodes, 6), np.float32)
    energy = np.zeros(op.n_nodes)
    for s0, s1, ue, fe in op.element_fields(u):
        strain[s0:s1] = ue @ b0.T
        energy[s0:s1] = 0.5 * np.einsum("ij,ij->i", ue, fe) / vol
    strain = np.ascontiguousarray(strain.reshape(op.node_shape[:3] + (6,))[:nx, :ny, :nz])
    energy = energy.reshape(op.node_shape[:3])[:nx, :ny, :nz]
    lam_f, mu_f = lame_factors(nu)
    lam, mu = e * lam_f, e * mu_f
    eps = strain.astype(np.float64)
    tr = eps[..., 0] + eps[..., 1] + eps[..., 2]
    s = [lam * tr + 2 * mu * eps[..., i] for i in range(3)]
    t = [mu * eps[..., i] for i in range(3, 6)]
    vm = np.sqrt(
        0.5 * ((s[0] - s[1]) ** 2 + (s[1] - s[2]) ** 2 + (s[2] - s[0]) ** 2)
        + 3.0 * (t[0] ** 2 + t[1] ** 2 + t[2] ** 2)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ees = np.where(e > 0, np.sqrt(np.maximum(2.0 * energy, 0.0) / np.where(e > 0, e, 1.0)), 0.0)
    return strain, vm.astype(np.float32), ees.astype(np.float32)


def _choose_backend(backend: str, n_voxels: int) -> str:
    if backend not in BACKENDS:
        raise ParameterError(f"Parameter backend={backend!r} is not known.", f"use one of {BACKENDS}.")
    if backend == "auto":
        return "gmg" if n_voxels >= AUTO_GMG_MIN_VOXELS else "amg"
    return backend


@dataclass(frozen=True)
class _FEProblem:
    """One load case on the cropped, capped model: materials, constraints and solver settings."""

    model_e: np.ndarray  # (nx, ny, nz) modulus solved, Pa (cropped, load path only, with caps)
    model_nu: np.ndarray  # scalar or (nx, ny, nz)
    bone: np.ndarray  # (nx, ny, nz) voxels the strength criterion counts
    origin: tuple  # index in the input array of element (0, 0, cap_layers)
    ncap: int
    dropped: int  # solid voxels off the load path
    embedded: int  # cap voxels cast into the end surfaces
    spacing: tuple
    load_case: LoadCase
    mat: Material
    height: float  # m, with caps
    u_top: float  # prescribed displacement of the top face, m
    solid_nodes: np.ndarray  # (nx+1, ny+1, nz+1) nodes of a solid voxel
    fixed: np.ndarray  # (nx+1, ny+1, nz+1, 3) fixed DOFs
    u_d: np.ndarray  # prescribed values, broadcast over x and y
    backend: str
    n_voxels: int
    tol: float
    maxiter: int


def _checked_nu(nu, e: np.ndarray, bone_mask) -> np.ndarray:
    """Poisson ratio as an array (scalar or per voxel) in [0, 0.49]; the bone mask on the modulus grid."""
    nu_arr = np.asarray(nu, dtype=float)
    if nu_arr.ndim not in (0, 3) or (nu_arr.ndim == 3 and nu_arr.shape != e.shape):
        raise ParameterError(
            f"Parameter nu has shape {nu_arr.shape}; it must be a scalar or match E_pa {e.shape}.",
            "pass one Poisson ratio or one per voxel.",
        )
    if nu_arr.size and (np.any(~np.isfinite(nu_arr)) or nu_arr.min() < 0.0 or nu_arr.max() > 0.49):
        raise ParameterError(
            f"Parameter nu outside [0, 0.49] (min {nu_arr.min():g}, max {nu_arr.max():g}).",
            "use a Poisson ratio in [0, 0.49] (bone ~0.3).",
        )
    if bone_mask is not None and np.shape(bone_mask) != e.shape:
        raise ParameterError(
            f"bone_mask has shape {np.shape(bone_mask)}, E_pa has {e.shape}.", "pass a matching mask."
        )
    return nu_arr


def _fe_problem(E_pa, spacing_m, nu, load_case, tol, backend, bone_mask, maxiter) -> _FEProblem:
    """Validate, crop to the load path, add the caps, and set the constraints of ``load_case``."""
    e = _validate_modulus(E_pa)
    spacing = _validate_spacing(spacing_m)
    check_range("tol", tol, 1e-14, 1e-2)
    nu_arr = _checked_nu(nu, e, bone_mask)
    model_e, model_nu, bone, origin, ncap, dropped, embedded = _crop_and_cap(
        e, nu_arr, bone_mask, load_case, spacing[2]
    )
    n_voxels = int(np.count_nonzero(model_e > 0))
    chosen = _choose_backend(backend, n_voxels)
    nx, ny, nz = model_e.shape
    node_shape = (nx + 1, ny + 1, nz + 1, 3)
    height = nz * spacing[2]
    u_top = -load_case.strain * height
    solid_nodes = np.zeros(node_shape[:3], bool)
    sol = model_e > 0
    for a in (0, 1):
        for b in (0, 1):
            for d in (0, 1):
                solid_nodes[a : a + nx, b : b + ny, d : d + nz] |= sol
    fixed, u_d = _constraints(node_shape, solid_nodes[:, :, 0], load_case.lateral, u_top)
    fixed &= solid_nodes[..., None]
    return _FEProblem(
        model_e=model_e, model_nu=model_nu, bone=bone, origin=origin, ncap=ncap, dropped=dropped, embedded=embedded,
        spacing=spacing, load_case=load_case, mat=Material(model_e, model_nu), height=height, u_top=u_top,
        solid_nodes=solid_nodes, fixed=fixed, u_d=u_d, backend=chosen, n_voxels=n_voxels, tol=tol, maxiter=maxiter,
    )


def _uniform_strain(pb: _FEProblem) -> np.ndarray:
    """Start for the iterative solver: u_z growing linearly from the bottom face (0) to the top (u_top), u_x = u_y = 0
    ((1, 1, NZ, 3), broadcast over x and y): the homogeneous answer without lateral expansion."""
    nz_nodes = pb.fixed.shape[2]
    guess = np.zeros((1, 1, nz_nodes, 3))
    guess[..., 2] = pb.u_top * np.linspace(0.0, 1.0, nz_nodes)
    return guess


def _solve_displacement(pb: _FEProblem):
    """Nodal displacement by the chosen backend, with its peak traced memory.

    Returns (u, iterations, residual, setup s, solve s, info, peak bytes)."""
    mat, spacing = pb.mat, pb.spacing
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    if pb.backend == "amg":
        from vertaug.physics.fe_solvers import solve_amg

        u, it, res, t_setup, t_solve, info = solve_amg(
            mat.coefs, mat.krefs, spacing, pb.fixed, pb.u_d, pb.tol, pb.maxiter
        )
    else:
        from vertaug.physics.fe_solvers import solve_gmg

        xp = _import_cupy() if pb.backend == "cupy" else np
        u, it, res, t_setup, t_solve, info = solve_gmg(
            mat.coefs, mat.krefs, spacing, pb.fixed, pb.u_d, pb.tol, pb.maxiter, xp=xp, u_guess=_uniform_strain(pb)
        )
        u = u.get() if hasattr(u, "get") else u
    peak = tracemalloc.get_traced_memory()[1] - base
    if not tracing:
        tracemalloc.stop()
    if res > pb.tol:
        warnings.warn(
            f"mechanics: CG stopped at relative residual {res:.2e} > tol {pb.tol:g} after {it} iterations.",
            stacklevel=3,  # at the caller of solve_stiffness
        )
    return u, it, res, t_setup, t_solve, info, peak


def _mechanics_result(pb: _FEProblem, solution, fields: bool) -> MechanicsResult:
    """Reaction forces on the loaded faces, stiffness, the element fields (if asked), packed with the set-up."""
    u, it, res, t_setup, t_solve, info, peak = solution
    op = VoxelOperator(pb.mat.coefs, pb.mat.krefs(np.asarray(pb.spacing)), np, np.float64)
    force = op.apply(np.asarray(u, dtype=np.float64))
    f_top = -float(force[:, :, -1, 2].sum())
    f_bottom = float(force[:, :, 0, 2].sum())
    stiffness = f_top / (pb.load_case.strain * pb.height) / 1e3
    if fields:
        strain, vm, ees = _postprocess(op, u, pb.model_e, pb.model_nu, pb.spacing)
    else:
        strain = vm = ees = np.zeros((0, 0, 0), np.float32)
    return MechanicsResult(
        stiffness_n_per_mm=stiffness,
        reaction_force_n=f_top,
        applied_displacement_m=-pb.u_top,
        height_m=pb.height,
        displacement_m=u,
        strain=strain,
        von_mises_pa=vm,
        effective_strain=ees,
        e_pa=pb.model_e.astype(np.float32),
        bone_mask=pb.bone,
        spacing_m=pb.spacing,
        origin_index=pb.origin,
        cap_layers=pb.ncap,
        load_case=pb.load_case,
        backend=pb.backend,
        iterations=it,
        residual=res,
        setup_time_s=t_setup,
        solve_time_s=t_solve,
        peak_memory_bytes=int(peak),
        n_voxels=pb.n_voxels,
        n_dofs=int(np.count_nonzero(~pb.fixed & pb.solid_nodes[..., None])),
        dropped_voxels=pb.dropped,
        embedded_voxels=pb.embedded,
        equilibrium_error=abs(f_top - f_bottom) / max(abs(f_top), 1e-300),
        info=info,
    )


def solve_stiffness(
    E_pa: np.ndarray,
    spacing_m,
    nu=0.3,
    load_case: LoadCase | None = None,
    tol: float = 1e-8,
    backend: str = "auto",
    bone_mask: np.ndarray | None = None,
    maxiter: int = 500,
    fields: bool = True,
) -> MechanicsResult:
    """Apparent axial stiffness of a voxel model under ``load_case`` (default: bonded compression, no caps).

    E_pa: modulus per voxel (Pa), axes (right, anterior, superior); 0 = void. nu: scalar or per-voxel array.
    bone_mask: voxels the strength criterion counts (default: every solid voxel of the input).
    backend: "gmg" (mixed-precision PCG + matrix-free geometric multigrid, ~150 B/voxel of arrays at 1e6), "amg" (assembled CSR +
    pyamg smoothed aggregation, ~12 kB/voxel at 1e6), "cupy" (gmg on a CUDA device) or "auto" (= "gmg").
    fields=False skips the element strain / von Mises / EES post-processing (then strength_n is unavailable).
    """
    load_case = load_case or compression_between_end_caps()
    pb = _fe_problem(E_pa, spacing_m, nu, load_case, tol, backend, bone_mask, maxiter)
    return _mechanics_result(pb, _solve_displacement(pb), fields)


def _import_cupy():
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ParameterError(
            "backend='cupy' needs CuPy and a CUDA device.",
            "install the 'gpu' extra (pip install vertaug[gpu]) or use backend='gmg'.",
        ) from exc
    return cupy


def strength_n(
    result: MechanicsResult,
    critical_strain: float = PISTOIA_CRITICAL_STRAIN,
    critical_volume: float = PISTOIA_CRITICAL_VOLUME,
) -> float:
    """Compressive load (N) at which ``critical_volume`` of the bone voxels exceed ``critical_strain`` (EES).

    Linear scaling of the solved load case (Pistoia et al. 2002): F_fail = F * eps_crit / EES_q, EES_q the
    (1 - critical_volume) quantile of the energy-equivalent strain over ``result.bone_mask``.
    """
    check_range("critical_strain", critical_strain, 1e-5, 0.2)
    q = critical_effective_strain(result, critical_volume)
    return float(result.reaction_force_n * critical_strain / q)


def critical_effective_strain(result: MechanicsResult, critical_volume: float = PISTOIA_CRITICAL_VOLUME) -> float:
    """EES_q: the (1 - ``critical_volume``) quantile of the energy-equivalent strain over ``result.bone_mask`` (the
    strain of the solved case that the Pistoia criterion scales to its critical strain)."""
    check_range("critical_volume", critical_volume, 1e-4, 0.5)
    if result.effective_strain.size == 0:
        raise ParameterError(
            "The result was solved with fields=False; strength needs the element strains.",
            "call solve_stiffness(..., fields=True).",
        )
    ees = np.sort(result.effective_strain[result.bone_mask].astype(np.float64))
    if ees.size == 0:
        raise EmptyMaskError(
            "No bone voxel in the load path for the strength criterion.",
            "pass a bone_mask that covers loaded bone.",
        )
    return float(ees[min(ees.size - 1, int(ees.size * (1.0 - critical_volume)))])


def export_vtk(result: MechanicsResult, path) -> None:
    """Write the solved model as a VTK unstructured grid of hexahedra (solid voxels) for ParaView.

    Point data: displacement_m. Cell data: E_pa, von_mises_pa, effective_strain, strain (6). Coordinates in metres,
    origin at the first node of the solved (cropped) model.
    """
    try:
        import meshio
    except ImportError as exc:
        raise ParameterError("export_vtk needs meshio.", "pip install meshio (extra 'vtk').") from exc
    from vertaug.physics.fe_grid import CORNERS, node_coordinates

    e = result.e_pa
    _nx, ny, nz = e.shape
    pts = node_coordinates(e.shape, result.spacing_m).reshape(3, -1).T.copy()
    ii, jj, kk = np.nonzero(e > 0)
    node = lambda a, b, d: ((ii + a) * (ny + 1) + (jj + b)) * (nz + 1) + (kk + d)
    vtk_order = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)]
    assert set(vtk_order) == set(CORNERS)
    cells = np.stack([node(*c) for c in vtk_order], axis=1)
    cell_data = {"E_pa": [e[ii, jj, kk]]}
    if result.von_mises_pa.size:
        cell_data["von_mises_pa"] = [result.von_mises_pa[ii, jj, kk]]
        cell_data["effective_strain"] = [result.effective_strain[ii, jj, kk]]
        cell_data["strain"] = [result.strain[ii, jj, kk]]
    mesh = meshio.Mesh(
        pts,
        [("hexahedron", cells)],
        point_data={"displacement_m": result.displacement_m.reshape(-1, 3)},
        cell_data=cell_data,
    )
    meshio.write(str(path), mesh)


@dataclass(frozen=True)
class StateMechanics:
    """Stiffness and strength of one state of a vertebra (intact, fractured, VP, KP)."""

    state: str
    stiffness_n_per_mm: float
    strength_n: float
    iterations: int
    solve_time_s: float


def augmentation_table(
    models: dict,
    spacing_m,
    nu=0.3,
    bone_masks: dict | None = None,
    load_case: LoadCase | None = None,
    backend: str = "auto",
) -> list[StateMechanics]:
    """Stiffness and strength for each state, e.g. {"intact": E0, "fractured": E1, "VP": E2, "KP": E3}.

    Each value is an E array (Pa) on the same grid. ``bone_masks[state]`` selects the voxels of the strength
    criterion (pass bone without cement). Default load case: compression between 2 mm PMMA end caps, bonded.
    """
    load_case = load_case or compression_between_end_caps(cap_thickness_m=2e-3)
    rows = []
    for state, e in models.items():
        mask = None if bone_masks is None else bone_masks.get(state)
        r = solve_stiffness(e, spacing_m, nu=nu, load_case=load_case, backend=backend, bone_mask=mask)
        rows.append(StateMechanics(state, r.stiffness_n_per_mm, strength_n(r), r.iterations, r.solve_time_s))
    return rows
