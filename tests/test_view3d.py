"""The report's interactive 3-D view (report.view3d): marching-cubes surfaces on the model grid in RAS+ mm, one
plotly scene per procedure, volumes in the hover text from the same fields as the table, and the page drawn by
headless Chromium with WebGL (skipped when chromium is not installed)."""

import json
from types import SimpleNamespace

import numpy as np

from vertaug.report.view3d import COARSE_STEP_VOXELS, figure_dict, figure_json, isosurface, plotly_js

SPACING_MM = 0.5
AFFINE = np.array([[SPACING_MM, 0, 0, -12.0], [0, SPACING_MM, 0, 30.0], [0, 0, SPACING_MM, -400.0], [0, 0, 0, 1]])


def _ball(shape, centre, radius_vox):
    ijk = np.indices(shape).reshape(3, -1).T
    return (np.linalg.norm(ijk - np.asarray(centre), axis=1) <= radius_vox).reshape(shape)


def _outcome(cement_outside=False, cavity=False, injected_ml=1.0, leaked_ml=0.0):
    shape = (40, 36, 30)
    body = np.zeros(shape, bool)
    body[4:32, 4:32, 4:26] = True
    f = 0.4 * _ball(shape, (18, 18, 15), 6).astype(np.float32)
    if cement_outside:
        f[34:37, 10:14, 10:14] = 0.3  # a lump beyond the body's right side
    # the cavity reaches above the cement ball, so part of it shows
    fields = {"balloon_cavity": _ball(shape, (18, 18, 21), 4).astype(np.float32)} if cavity else {}
    model = SimpleNamespace(spacing_m=(SPACING_MM * 1e-3,) * 3, affine_mm=AFFINE, body_mask=body)
    return SimpleNamespace(model_after=model, cement_fraction=f, fields=fields,
                           injection=SimpleNamespace(injected_ml=injected_ml, leaked_ml=leaked_ml))


def test_isosurface_of_a_ball_is_closed_and_lies_on_its_sphere_in_world_mm():
    r_vox = 8.0
    ball = _ball((30, 30, 30), (15, 15, 15), r_vox).astype(np.float32)
    verts, faces = isosurface(ball, 0.5, AFFINE)
    centre_mm = AFFINE[:3, :3] @ np.array([15.0, 15, 15]) + AFFINE[:3, 3]
    r_mm = np.linalg.norm(verts - centre_mm, axis=1)
    # a binary ball's 0.5 level lies between its last voxel inside and first outside: within a voxel of R
    assert abs(r_mm.mean() - r_vox * SPACING_MM) < 0.5 * SPACING_MM
    assert r_mm.max() < (r_vox + 1) * SPACING_MM and r_mm.min() > (r_vox - 1) * SPACING_MM
    # closed: every edge is shared by exactly two triangles
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()
    # closed at the grid's edge too (zero padding): a block touching the border
    block = np.zeros((10, 10, 10), np.float32)
    block[:5] = 1.0
    _, fb = isosurface(block, 0.5, AFFINE)
    eb = np.sort(np.concatenate([fb[:, [0, 1]], fb[:, [1, 2]], fb[:, [2, 0]]]), axis=1)
    assert (np.unique(eb, axis=0, return_counts=True)[1] == 2).all()
    assert isosurface(np.zeros((5, 5, 5)), 0.5, AFFINE) is None


def test_figure_has_one_scene_per_procedure_with_its_parts_and_the_tables_volumes():
    vp = _outcome(cement_outside=True, injected_ml=1.30, leaked_ml=0.021)
    kp = _outcome(cavity=True, injected_ml=3.41)
    fig = figure_dict({"VP": vp, "KP": kp}, display_min=0.01)
    names = [(t["scene"], t["name"]) for t in fig["data"]]
    assert names == [("scene", "VP: vertebral body"), ("scene", "VP: cement in the body"),
                     ("scene", "VP: cement outside the body (leak)"), ("scene2", "KP: vertebral body"),
                     ("scene2", "KP: balloon cavity"), ("scene2", "KP: cement in the body")]
    assert fig["layout"]["scene"]["domain"]["x"] == [0.0, 0.5] and fig["layout"]["scene2"]["domain"]["x"] == [0.5, 1]
    voxel_ml = SPACING_MM**3 * 1e-3
    in_body = float(vp.cement_fraction[vp.model_after.body_mask].sum()) * voxel_ml
    outside = float(vp.cement_fraction[~vp.model_after.body_mask].sum()) * voxel_ml
    text = {t["name"]: t["text"] for t in fig["data"]}
    assert text["VP: cement in the body"].startswith(f"VP cement in the body: {in_body:.2f} mL (of 1.30 mL injected")
    assert "0.021 mL leaked" in text["VP: cement in the body"]
    assert text["VP: cement outside the body (leak)"] == f"VP cement outside the body (leak): {outside:.2f} mL"
    n_cavity = int(_outcome(cavity=True).fields["balloon_cavity"].sum())
    assert text["KP: balloon cavity"] == f"KP balloon cavity: {n_cavity * voxel_ml:.2f} mL"


def test_surfaces_are_in_the_cts_world_millimetres_and_the_body_is_stepped():
    fig = figure_dict({"VP": _outcome()}, display_min=0.01)
    body = next(t for t in fig["data"] if t["name"] == "VP: vertebral body")
    cement = next(t for t in fig["data"] if t["name"] == "VP: cement in the body")

    def xyz(trace):  # plotly's base64 typed arrays, as the browser decodes them
        import base64

        return np.stack([np.frombuffer(base64.b64decode(trace[a]["bdata"]), trace[a]["dtype"]) for a in "xyz"], 1)

    lo, hi = xyz(body).min(axis=0), xyz(body).max(axis=0)
    # body voxels 4..31, 4..31, 4..25: the 0.5 level half a voxel beyond (within the body step)
    want_lo = AFFINE[:3, :3] @ np.array([4.0, 4, 4]) + AFFINE[:3, 3]
    want_hi = AFFINE[:3, :3] @ np.array([31.0, 31, 25]) + AFFINE[:3, 3]
    np.testing.assert_allclose(lo, want_lo, atol=COARSE_STEP_VOXELS * SPACING_MM)
    np.testing.assert_allclose(hi, want_hi, atol=COARSE_STEP_VOXELS * SPACING_MM)
    # the cement ball (radius 6 voxels at (18, 18, 15)) sits inside it
    c = xyz(cement)
    centre = AFFINE[:3, :3] @ np.array([18.0, 18, 15]) + AFFINE[:3, 3]
    assert np.linalg.norm(c - centre, axis=1).max() < 7 * SPACING_MM
    assert len(xyz(body)) < len(c) * 3  # the body is meshed every COARSE_STEP_VOXELS voxels


def test_nothing_to_draw_gives_no_figure_and_the_json_is_script_safe():
    empty = _outcome()
    empty.model_after.body_mask[:] = False
    empty.cement_fraction[:] = 0.0
    assert figure_dict({"VP": empty}, display_min=0.01) is None
    vp = _outcome()
    vp.injection.injected_ml = 1.0
    js = figure_json({"VP</script>": vp}, display_min=0.01)
    assert "</script>" not in js and json.loads(js)["data"][0]["name"] == "VP</script>: vertebral body"


def test_view_is_drawn_with_webgl_in_headless_chromium(tmp_path, chromium_shot):
    """A page with the inlined plotly.js and the figure: no console message, plotly's WebGL canvases in the DOM
    (not its "WebGL is not supported" notice), and the cement (orange) and cavity (cyan) on the screenshot."""
    shot = chromium_shot
    fig = figure_json({"VP": _outcome(cement_outside=True), "KP": _outcome(cavity=True)}, display_min=0.01)
    page = tmp_path / "view.html"
    page.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><script>{plotly_js()}</script></head><body>'
                    f'<div class="view3d"><div id="v3d" style="width:1000px;height:500px"></div></div><script>'
                    f'var fig={fig};Plotly.newPlot("v3d",fig.data,fig.layout,{{displaylogo:false}});</script>'
                    "</body></html>", encoding="utf-8")
    messages, dom = shot.console_messages(page)
    assert messages == []
    view = dom.split('id="v3d"')[1].split("<script")[0]  # the view's div as plotly left it
    assert "js-plotly-plot" in view and "<canvas" in view and "WebGL is not supported" not in view
    rgb = shot.shoot_only(page, "view3d", tmp_path / "view.png", width=1000, height=560)
    rgb = rgb[:440]  # the scenes, above the legend
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    orange = (r > 0.5) & (r > g + 0.1) & (g > b) & (r - b > 0.3)
    cyan = (b > 0.45) & (g > 0.42) & (r < 0.35) & (g - r > 0.15)  # #00a0c0 over white and the grey body
    green = (g > 0.45) & (g > r + 0.2) & (g > b + 0.2)
    assert orange[:, :500].mean() > 0.005 and orange[:, 500:].mean() > 0.005  # the cement, in both scenes
    assert cyan[:, 500:].mean() > 0.0005 and cyan[:, :500].mean() == 0.0  # KP's cavity only
    assert green[:, :500].mean() > 0.0002  # VP's leak
