"""DRR and fluoroscopy frames: exact line integrals, attenuation data, objects, frames and files."""

from __future__ import annotations

import numpy as np
import pytest

from orders import assert_expected_order
from vertaug.anatomy.io import Volume
from vertaug.errors import GridMismatchError, InvalidValueError, ParameterError
from vertaug.imaging import drr, fluoro

MU_W = 0.02059  # 1/mm, NIST water at 60 keV


# ------------------------------------------------------------------------------------------------ phantoms


def _cylinder_rod_volume(h=0.5, R=40.0, r=6.0, rod_y=15.0, mu_rod=0.1, n_sub=4, half=44.0, half_z=12.0):
    """Water cylinder (axis z, radius R) with a dense rod (radius r at y=rod_y), voxel fractions by supersampling."""
    n = round(2 * half / h)
    nz = round(2 * half_z / h)
    c = (np.arange(n) + 0.5) * h - half
    off = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * h
    fw = np.zeros((n, n))
    fr = np.zeros((n, n))
    for ox in off:
        for oy in off:
            x, y = np.meshgrid(c + ox, c + oy, indexing="ij")
            fw += (x**2 + y**2 <= R**2)
            fr += (x**2 + (y - rod_y) ** 2 <= r**2)
    fw /= n_sub**2
    fr /= n_sub**2
    mu2 = MU_W * fw + (mu_rod - MU_W) * fr
    mu = np.repeat(mu2[:, :, None], nz, axis=2).astype(np.float32)
    aff = np.diag([h, h, h, 1.0])
    aff[:3, 3] = [-half + h / 2, -half + h / 2, -half_z + h / 2]
    return mu, aff


def _chord_circle_2d(p, d, centre, radius):
    """Chord of the 2-D lines p + t d (rows) through a circle, per unit t."""
    q = p - centre
    a = (d * d).sum(1)
    b = (q * d).sum(1)
    c = (q * q).sum(1) - radius**2
    disc = b * b - a * c
    return np.where(disc > 0, 2 * np.sqrt(np.maximum(disc, 0)) / a, 0.0)


# ------------------------------------------------------------------------------------------------ exact DRR


@pytest.mark.parametrize("view", ["lateral", "ap"])
def test_water_cylinder_with_rod_parallel_matches_analytic_within_1pct(view):
    R, r, rod_y, mu_rod = 40.0, 6.0, 15.0, 0.1
    mu, aff = _cylinder_rod_volume(R=R, r=r, rod_y=rod_y, mu_rod=mu_rod)
    g = drr.Geometry(view=view, size_mm=(80.0, 10.0), pixel_mm=0.5)
    rays = drr.make_rays(g)
    line = drr.project_volume(mu, aff, rays)
    # detector columns run along -y (lateral) or -x (ap); the beam along x (lateral) or -y (ap)
    p = rays.origins.reshape(g.shape + (3,))[g.shape[0] // 2]
    if view == "lateral":
        s = p[:, 1]
        exact = MU_W * 2 * np.sqrt(np.maximum(R**2 - s**2, 0)) + (mu_rod - MU_W) * 2 * np.sqrt(
            np.maximum(r**2 - (s - rod_y) ** 2, 0))
    else:
        s = p[:, 0]
        exact = MU_W * 2 * np.sqrt(np.maximum(R**2 - s**2, 0)) + (mu_rod - MU_W) * 2 * np.sqrt(
            np.maximum(r**2 - s**2, 0))
    got = line[g.shape[0] // 2]
    # away from the tangent rays at the cylinder's rim (2 mm) and at the rod's edge (one voxel)
    rod_s = rod_y if view == "lateral" else 0.0
    inner = (np.abs(s) < R - 2.0) & (np.abs(np.abs(s - rod_s) - r) > 0.5)
    rel = np.abs(got[inner] - exact[inner]) / exact[inner]
    assert rel.max() < 0.01, rel.max()
    # the rod adds its chord: the peak over the rod is 2 r (mu_rod - mu_w) above the water alone
    assert got.max() == pytest.approx(exact.max(), rel=0.01)


def test_water_cylinder_with_rod_perspective_matches_analytic_within_1pct():
    R, r, rod_y, mu_rod = 40.0, 6.0, 15.0, 0.1
    mu, aff = _cylinder_rod_volume(R=R, r=r, rod_y=rod_y, mu_rod=mu_rod, half_z=30.0)
    g = drr.Geometry(view="lateral", size_mm=(80.0, 20.0), pixel_mm=0.5, projection="perspective",
                     source_detector_mm=1000.0, source_isocentre_mm=300.0)
    rays = drr.make_rays(g)
    line = drr.project_volume(mu, aff, rays).ravel()
    o, d = rays.origins, rays.directions
    # the cylinder is infinite in z within the volume (rays stay inside |z| < 30 mm): 3-D chord = 2-D chord / |d_xy|
    w2 = _chord_circle_2d(o[:, :2], d[:, :2], np.zeros(2), R)
    r2 = _chord_circle_2d(o[:, :2], d[:, :2], np.array([0.0, rod_y]), r)
    exact = MU_W * w2 + (mu_rod - MU_W) * r2  # t is mm along the unit 3-D direction already
    # away from the rim (2 mm) and from rays that graze the rod (within one voxel of tangency): there the phantom's
    # partial-volume voxels, not the projector, set the error
    dxy = d[:, :2] / np.linalg.norm(d[:, :2], axis=1, keepdims=True)
    q = o[:, :2] - np.array([0.0, rod_y])
    rod_dist = np.abs(q[:, 0] * dxy[:, 1] - q[:, 1] * dxy[:, 0])
    ok = (w2 > 2 * np.sqrt(R**2 - (R - 2.0) ** 2)) & (np.abs(rod_dist - r) > 0.5)
    assert ok.mean() > 0.8
    rel = np.abs(line[ok] - exact[ok]) / exact[ok]
    assert rel.max() < 0.01, rel.max()
    # divergent rays: the rod's shadow is magnified by SDD/SOD-ish at the detector, but pixels are at isocentre
    assert np.ptp(o, axis=0).max() < 1e-9  # a single source point


def test_joseph_second_order_on_smooth_field():
    """Line integral of a 3-D Gaussian through oblique perspective rays: the RMS error falls as h^2."""
    sigma, A = 6.0, 0.05
    g = drr.Geometry(view="ap", size_mm=(24.0, 24.0), pixel_mm=0.7, projection="perspective",
                     source_detector_mm=400.0, source_isocentre_mm=150.0)
    rays = drr.make_rays(g)
    c0 = np.array([1.3, -0.7, 2.1])
    q = rays.origins - c0
    tmin = -(q * rays.directions).sum(1)
    dist2 = ((q + tmin[:, None] * rays.directions) ** 2).sum(1)
    exact = (A * np.sqrt(2 * np.pi) * sigma * np.exp(-dist2 / (2 * sigma**2))).reshape(g.shape)
    errs = []
    hs = (2.0, 1.0, 0.5)
    for h in hs:
        n = int(np.ceil(2 * 5 * sigma / h))
        half = n * h / 2
        c = (np.arange(n) + 0.5) * h - half
        x, y, z = np.meshgrid(c, c, c, indexing="ij")
        f = A * np.exp(-((x - c0[0]) ** 2 + (y - c0[1]) ** 2 + (z - c0[2]) ** 2) / (2 * sigma**2))
        aff = np.diag([h, h, h, 1.0])
        aff[:3, 3] = -half + h / 2
        # RMS over many pixels: they fall at all sub-voxel positions, so the error constant does not jump with h
        errs.append(np.sqrt(((drr.project_volume(f, aff, rays) - exact) ** 2).mean()))
    assert_expected_order(hs, errs, expected=2.0, tol=0.2, kind="all")  # each halving of h
    assert errs[-1] / exact.max() < 1e-3


def test_axis_aligned_fast_path_equals_plane_marching():
    rng = np.random.default_rng(0)
    data = rng.random((12, 10, 8)).astype(np.float32)
    aff = np.diag([1.5, 1.0, 2.0, 1.0])
    aff[:3, 3] = [-8.0, -5.0, -7.0]
    g = drr.Geometry(view="lateral", size_mm=(12.0, 14.0), pixel_mm=0.7)
    rays = drr.make_rays(g)
    fast = drr.project_volume(data, aff, rays)
    slow_rays = drr.Rays(rays.origins, rays.directions, rays.shape, None)  # forces the plane loop
    slow = drr.project_volume(data, aff, slow_rays)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)
    # an axis-aligned parallel beam integrates the piecewise-constant field exactly: total = sum * voxel volume
    g2 = drr.Geometry(view="lateral", centre_mm=(0.0, -0.5, -0.5), size_mm=(10.0, 16.0), pixel_mm=1.0)
    assert drr.project_volume(data, np.diag([1.0, 1.0, 1.0, 1.0]) @ _shift(-5.5, -5.0, -4.0), drr.make_rays(g2)).sum() \
        == pytest.approx(float(data.sum()), rel=1e-5)


def _shift(x, y, z):
    a = np.eye(4)
    a[:3, 3] = [x, y, z]
    return a


# ------------------------------------------------------------------------------------------------ attenuation


def test_attenuation_from_hu_and_nist_values():
    assert drr.mu_water_per_mm() == pytest.approx(MU_W, rel=1e-12)
    mu = drr.mu_from_hu(np.array([-1200.0, -1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(mu, [0.0, 0.0, MU_W, 2 * MU_W], rtol=1e-6)
    # table nodes are returned as tabulated; 70 keV lies between 60 and 80 keV on a log-log line
    assert drr.mass_attenuation_cm2_g("I", 60.0) == pytest.approx(7.579)
    assert drr.mass_attenuation_cm2_g("Ba", 60.0) == pytest.approx(8.511)
    m70 = drr.mass_attenuation_cm2_g("water", 70.0)
    assert 0.1837 < m70 < 0.2059
    assert np.log(m70) == pytest.approx(0.5 * (np.log(0.2059) + np.log(0.1837)), abs=0.01)


def test_cement_contrast_and_steel_attenuation_by_hand():
    w_ba = 137.327 / 233.383
    w_s = 32.06 / 233.383
    w_o = 4 * 15.999 / 233.383
    w_b = 0.11 / w_ba  # BaSO4 share giving 11 wt% Ba (Lewis 2007)
    assert w_b == pytest.approx(0.187, abs=1e-3)
    rho = 1 / ((1 - w_b) / 1.19 + w_b / 4.5)
    hand = rho * ((1 - w_b) * 0.1924 + w_b * (w_ba * 8.511 + w_s * 0.4053 + w_o * 0.1907)) / 10
    assert drr.CEMENT_PMMA_BASO4.density_g_cm3 == pytest.approx(1.380, abs=1e-3)
    assert drr.CEMENT_PMMA_BASO4.mu_per_mm() == pytest.approx(hand, rel=1e-9)
    assert drr.CEMENT_PMMA_BASO4.mu_per_mm() == pytest.approx(0.1535, abs=5e-4)  # 7.5 x water
    # 30 wt% BaSO4 in the whole cement (not the powder) would be 12.4 x water
    assert drr.cement_material(0.30).mu_per_mm() / MU_W == pytest.approx(12.38, abs=0.02)
    assert drr.contrast_material(150.0).mu_per_mm() == pytest.approx((0.2059 + 0.150 * 7.579) / 10, rel=1e-3)
    assert drr.STAINLESS_STEEL.mu_per_mm() == pytest.approx(8.0 * (0.71 * 1.205 + 0.19 * 0.9639 + 0.10 * 1.512) / 10)
    # barium's edge makes cement relatively stronger at low energy: ratio to water falls with energy
    ratios = [drr.CEMENT_PMMA_BASO4.mu_per_mm(e) / drr.mu_water_per_mm(e) for e in (40, 60, 100)]
    assert ratios[0] > ratios[1] > ratios[2]


def test_bad_inputs_raise():
    with pytest.raises(InvalidValueError):
        drr.mu_from_hu(np.array([0.0, np.nan]))
    with pytest.raises(ParameterError, match="energy_kev"):
        drr.mu_water_per_mm(20.0)
    with pytest.raises(ParameterError, match="view"):
        drr.Geometry(view="oblique")
    with pytest.raises(ParameterError, match="source_isocentre_mm"):
        drr.Geometry(projection="perspective", source_detector_mm=500.0, source_isocentre_mm=800.0)
    with pytest.raises(ParameterError, match="sum"):
        drr.mu_mixture_per_mm({"water": 0.5}, 1.0)
    with pytest.raises(ParameterError):
        drr.ellipsoid_chord_mm(drr.make_rays(drr.Geometry()), (0, 0, 0), (1.0, -1.0, 1.0))


# ------------------------------------------------------------------------------------------------ analytic shapes


def test_cylinder_tube_and_ellipsoid_chords():
    g = drr.Geometry(view="lateral", size_mm=(21.0, 21.0), pixel_mm=1.0)  # odd: the central ray at (y, z) = 0
    rays = drr.make_rays(g)
    mid = (10, 10)
    # cannula along y (perpendicular to the lateral beam): central chord = 2R, through the wall = 2(R - r)
    ch = drr.cylinder_chord_mm(rays, (0, -20, 0), (0, 20, 0), 1.524)
    assert ch[mid] == pytest.approx(2 * 1.524)
    tube = drr.tube_chord_mm(rays, (0, -20, 0), (0, 20, 0), 1.524, 1.194)
    assert tube[mid] == pytest.approx(2 * (1.524 - 1.194))
    # cylinder along the beam, length 30 mm: chord = 30 inside its radius, 0 outside
    along = drr.cylinder_chord_mm(rays, (-15, 0, 0), (15, 0, 0), 2.0)
    assert along[mid] == pytest.approx(30.0)
    assert along[mid[0], mid[1] + 3] == 0.0
    # cut by a flat end: a cylinder along y from 0 to 20 is hit only on one side of the image
    half = drr.cylinder_chord_mm(rays, (0, 0.5, 0), (0, 20, 0), 1.0)
    assert half[mid[0], :10].max() > 0 and half[mid[0], 11:].max() == 0  # columns run along -y
    e = drr.ellipsoid_chord_mm(rays, (0, 0, 0), (7.0, 4.0, 3.0))
    assert e[mid] == pytest.approx(14.0)
    assert e[mid[0], mid[1] + 2] == pytest.approx(14.0 * np.sqrt(1 - (2 / 4.0) ** 2))


def test_voxel_sphere_projection_matches_analytic_chord():
    grid = fluoro.OverlayGrid(_shift(-30, -30, -30) @ np.diag([0.5, 0.5, 0.5, 1.0]), (120, 120, 120))
    e = fluoro.Ellipsoid((0.2, -0.3, 0.1), (8.0, 8.0, 8.0))
    f = fluoro.ellipsoid_fraction(grid, e, supersample=3)
    assert f.sum() * grid.voxel_volume_ml == pytest.approx(e.volume_ml, rel=0.005)
    g = drr.Geometry(view="ap", size_mm=(30.0, 30.0), pixel_mm=1.0, projection="perspective")
    rays = drr.make_rays(g)
    vox = drr.project_volume(f, grid.affine_mm, rays)
    exact = drr.ellipsoid_chord_mm(rays, e.centre_mm, e.semi_axes_mm)
    inner = exact > 8.0
    assert np.abs(vox[inner] - exact[inner]).max() / 16.0 < 0.02


def test_resample_to_grid_identity_and_shift():
    rng = np.random.default_rng(1)
    f = rng.random((6, 7, 8)).astype(np.float32)
    aff = _shift(3.0, -2.0, 1.0)
    np.testing.assert_allclose(drr.resample_to_grid(f, aff, aff, f.shape), f, atol=1e-6)
    moved = drr.resample_to_grid(f, aff, aff @ _shift(1, 0, 0), (5, 7, 8))
    np.testing.assert_allclose(moved, f[1:], atol=1e-6)


# ------------------------------------------------------------------------------------------------ frames on a synthetic CT


def _small_ct():
    """A 2-mm water box (120 x 100 x 120 mm) with a bone block in the middle."""
    hu = np.full((60, 50, 60), -1000.0, dtype=np.float32)
    hu[5:55, 5:45, :] = 0.0
    hu[25:35, 20:30, :] = 700.0
    aff = _shift(-59, -49, -59) @ np.diag([2.0, 2.0, 2.0, 1.0])
    return Volume(hu, aff, "phantom")


def _grid():
    aff = np.diag([1.0, 1.0, 1.0, 1.0]) @ _shift(-20, -20, -20)
    body = np.zeros((41, 41, 41), dtype=bool)
    body[10:31, 10:31, 10:31] = True
    return fluoro.OverlayGrid(aff, (41, 41, 41), body)


def test_frames_add_cement_exactly_and_mark_only_leaks():
    ct, grid = _small_ct(), _grid()
    inside = fluoro.ellipsoid_fraction(grid, fluoro.Ellipsoid((0, 0, 0), (6.0, 5.0, 4.0)))
    leak = fluoro.ellipsoid_fraction(grid, fluoro.Ellipsoid((0, 14.0, 0), (2.5, 2.5, 2.5)))
    frames = [
        fluoro.FluoroFrame("empty"),
        fluoro.FluoroFrame("cement", cement_fraction=inside),
        fluoro.FluoroFrame("cement + leak", cement_fraction=np.clip(inside + leak, 0, 1)),
        fluoro.FluoroFrame("cannula", cannulas=(fluoro.Cannula((0, -40, 0), (0, 0, 0)),)),
    ]
    pf = fluoro.render_procedure(ct, grid, frames, fov_mm=80.0, pixel_mm=1.0, fit_fov=False)
    d_cem = drr.CEMENT_PMMA_BASO4.mu_per_mm() - MU_W
    for view in ("lateral", "ap"):
        ims = pf.images[view]
        base = ims[0].line_integral
        # conservation: the image integral of the added line integral equals the volume integral of d_mu
        added = (ims[1].line_integral - base).sum() * 1.0**2
        assert added == pytest.approx(float(inside.sum()) * d_cem, rel=0.01)
        # no leak -> no red; leak -> red pixels, and the leak map holds the leaked volume
        red = np.all(ims[1].rgb == fluoro.LEAK_RGB, axis=-1)
        assert not red.any()
        red2 = np.all(ims[2].rgb == fluoro.LEAK_RGB, axis=-1)
        assert red2.sum() > 10
        assert ims[2].leak_mm.sum() == pytest.approx(float(leak.sum()), rel=0.01)
        # cement is shown darker than the plain frame at its centre
        h, w = ims[1].rgb.shape[:2]
        assert ims[1].rgb[h // 2, w // 2, 0] < ims[0].rgb[h // 2, w // 2, 0]
    # the steel cannula (11 G wall) seen side-on in the lateral view: the mean chord across its width is its wall area
    # divided by the pixel -> integral over the image column = pi (R^2 - r^2) per mm of length
    lat = pf.images["lateral"]
    steel = (lat[3].line_integral - lat[0].line_integral) / (drr.STAINLESS_STEEL.mu_per_mm() - MU_W)
    col = steel[:, 60]  # a detector column crossing the cannula 20 mm behind the tip (columns run along -y)
    area = np.pi * ((3.048 / 2) ** 2 - (2.388 / 2) ** 2)
    assert col.sum() * 1.0 == pytest.approx(area, rel=0.03)


def test_write_fluoro_files(tmp_path):
    from PIL import Image

    ct, grid = _small_ct(), _grid()
    f = fluoro.ellipsoid_fraction(grid, fluoro.Ellipsoid((0, 0, 0), (5.0, 5.0, 4.0)))
    frames = [fluoro.FluoroFrame("a"), fluoro.FluoroFrame("b", cement_fraction=f * 0.5),
              fluoro.FluoroFrame("c", cement_fraction=f, balloon=fluoro.Ellipsoid((0, 0, 0), (3.0, 3.0, 3.0)))]
    paths = fluoro.write_fluoro(tmp_path, ct, {"VP": (grid, frames), "KP": (grid, frames[:2])}, fov_mm=60.0)
    assert set(paths) == {"VP_lateral", "VP_ap", "KP_lateral", "KP_ap", "key_frames"}
    with Image.open(paths["VP_ap"]) as im:
        assert im.n_frames == 3
        assert im.size == (120, 120)  # 60 mm at 1 mm, shown at 2x
    with Image.open(paths["key_frames"]) as im:  # 4 rows (VP, KP x lateral, AP) of up to 3 tiles at their own size
        title = fluoro._title_font(fluoro.KEY_FRAME_TITLE_PX)[1]
        assert im.size == (3 * (120 + 6) + 6, 4 * (120 + title + 6) + 6)
        sheet = np.asarray(im.convert("RGB"))
    pf = fluoro.render_procedure(ct, grid, frames, name="VP", fov_mm=60.0)
    first = pf.images["lateral"][0].rgb  # row 0, column 0: VP lateral, frame "a", pasted without resampling
    assert np.array_equal(sheet[6 + title: 6 + title + 120, 6: 126], first)


def test_frame_inputs_validated():
    ct, grid = _small_ct(), _grid()
    with pytest.raises(GridMismatchError):
        fluoro.render_procedure(ct, grid, [fluoro.FluoroFrame("x", cement_fraction=np.zeros((5, 5, 5)))])
    with pytest.raises(InvalidValueError):
        fluoro.render_procedure(ct, grid, [fluoro.FluoroFrame("x", cement_fraction=np.full(grid.shape, 1.5))])
    with pytest.raises(ParameterError):
        fluoro.render_procedure(ct, grid, [])


# ------------------------------------------------------------------------------------------------ real CT


@pytest.fixture(scope="module")
def l1(example):
    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.model.vertebra import vertebra_from_ct

    ct = load_ct(example["ct"])
    seg = load_labels(example["seg"], ct)
    body = load_labels(example["body"], ct)
    return ct, seg, vertebra_from_ct(ct, seg, "L1", body)


def test_real_ct_vertebrae_project_where_they_are(l1):
    """On the bundled CT, each lumbar vertebra's own contribution to the AP and lateral DRR (the DRR minus the DRR with
    that vertebra's voxels set to water) lies at the pixel of its centroid (patient's right on the viewer's left,
    anterior on the left of the lateral view, superior up) and holds the vertebra's whole extra attenuation."""
    from vertaug.anatomy.levels import label_table

    ct, seg, _ = l1
    centre = ct.affine_mm[:3, :3] @ ((np.asarray(ct.shape) - 1) / 2.0) + ct.affine_mm[:3, 3]
    table = label_table("v2")
    for view in ("ap", "lateral"):
        g = drr.Geometry(view=view, centre_mm=tuple(centre), size_mm=(330.0, 340.0), pixel_mm=1.0)
        full = fluoro.drr_line_integral(ct, g)
        _, u, v = drr.VIEWS[view]
        for lvl in ("L1", "L3"):
            mask = seg.data == table[lvl]
            water = Volume(np.where(mask, np.float32(0.0), ct.data), ct.affine_mm)
            bone = full - fluoro.drr_line_integral(water, g)
            p = ct.affine_mm[:3, :3] @ np.argwhere(mask).mean(0) + ct.affine_mm[:3, 3]
            col = round((p - centre) @ u + (g.shape[1] - 1) / 2)
            row = round((p - centre) @ v + (g.shape[0] - 1) / 2)
            assert bone[row, col] > 0.05, (view, lvl, bone[row, col])
            w = np.clip(bone, 0, None)
            rr, cc = np.indices(bone.shape)
            shadow = np.array([(w * rr).sum(), (w * cc).sum()]) / w.sum()
            assert np.hypot(shadow[0] - row, shadow[1] - col) < 8.0, (view, lvl, shadow, row, col)
            # the shadow holds the vertebra's whole extra attenuation: sum(dL) * pixel^2 = int (mu - mu_w) dV
            dmu = drr.mu_from_hu(ct.data[mask]) - drr.mu_water_per_mm()
            assert bone.sum() == pytest.approx(float(dmu.sum()) * 27.0, rel=0.01)


def test_real_ct_synthetic_vp_and_kp_frames(l1, tmp_path):
    ct, _, v = l1
    grid = fluoro.OverlayGrid.from_vertebra(v)
    vp = fluoro.synthetic_timeline(v, "VP", volume_ml=4.0, leak_ml=0.3)
    kp = fluoro.synthetic_timeline(v, "KP", volume_ml=4.0)
    last = vp[-1].cement_fraction
    assert last.sum() * grid.voxel_volume_ml == pytest.approx(4.0, rel=0.01)
    assert (last * ~grid.body_mask).sum() * grid.voxel_volume_ml == pytest.approx(0.3, rel=0.02)
    assert kp[-1].cement_fraction.sum() * grid.voxel_volume_ml == pytest.approx(4.0, rel=0.01)
    assert (kp[-1].cement_fraction * ~grid.body_mask).sum() == 0
    pf = fluoro.render_procedure(ct, grid, vp, name="VP")
    for view in ("lateral", "ap"):
        reds = [int(np.all(im.rgb == fluoro.LEAK_RGB, axis=-1).sum()) for im in pf.images[view]]
        assert reds[:3] == [0, 0, 0] and reds[-1] > 10  # the leak appears from the second half of the fill
        assert pf.images[view][-1].leak_mm.sum() == pytest.approx(300.0, rel=0.02)  # mm^3 at 1 mm pixels


def test_cannulas_from_trajectories_map_model_indices_to_world():
    from types import SimpleNamespace

    v = SimpleNamespace(affine_mm=_shift(10.0, -5.0, 2.0) @ np.diag([0.5, 0.5, 0.5, 1.0]))
    t = SimpleNamespace(entry_ijk=(0.0, 0.0, 0.0), tip_ijk=(20.0, 40.0, 10.0), gauge_mm=2.413)
    (c,) = fluoro.cannulas_from_trajectories(v, [t])
    assert c.entry_mm == pytest.approx((10.0, -5.0, 2.0))
    assert c.tip_mm == pytest.approx((20.0, 15.0, 7.0))
    assert c.outer_diameter_mm == pytest.approx(2.413)
    assert 0 < c.inner_diameter_mm < c.outer_diameter_mm


def test_write_drr_png_of_a_ct(tmp_path):
    from PIL import Image

    path = fluoro.write_drr_png(_small_ct(), tmp_path / "drr.png", projection="perspective")
    with Image.open(path) as im:
        assert im.size[0] > 500 and im.size[1] > 300
