"""The report's interactive 3-D view: the vertebral body surface with VP's and KP's cement, KP's balloon cavity and
the cement outside the body (leak), side by side (one scene per procedure, turned together), rotatable and zoomable
in the page, with a legend that hides or shows each part and hover text that gives each part's volume.

Library: plotly.js, the offline bundle shipped inside the ``plotly`` wheel (``plotly.offline.get_plotlyjs()``),
inlined once in report.html: no network, the version pinned by the Python package (MIT, maintained by Plotly). Its
``Mesh3d`` trace draws a lit, translucent triangle mesh with WebGL from a figure built here in Python, with legend,
hover and camera controls included; three.js or vtk.js would need our own camera, legend and hover code and a
JavaScript bundle that no Python package pins. The cost is the bundle: 4.8 MB of JavaScript in every report.

Surfaces: ``skimage.measure.marching_cubes`` (Lewiner T, Lopes H, Vieira AW, Tavares G 2003, Efficient
implementation of marching cubes' cases with topological guarantees, J Graph Tools 8(2):1-15,
doi:10.1080/10867651.2003.10487582) on the model grid, zero-padded so that every surface is closed, vertices
mapped by the model's ``affine_mm`` to RAS+ world millimetres (the CT's coordinates, as the NIfTI overlays). The
parts and their iso-levels:

- body: the body mask (0/1) at 0.5, every ``COARSE_STEP_VOXELS``-th voxel (``step_size``: the translucent shell
  needs no more detail, and it is the largest surface);
- cement: the cement volume fraction inside the body at ``display_min`` (the report's ``DISPLAY_MIN_FRACTION``, the
  same threshold as the cement figures), every voxel;
- leak: the cement fraction outside the body at ``display_min``; cement that left the model through a vein, the disc
  or a cortical break is counted in the leakage row where it exits and is not drawn;
- cavity: KP's balloon cavity (0/1) at 0.5.

Volumes in the hover text come from the same fields as the table's and the overlays' (sum of the cement fraction x
voxel volume; injected and leaked volumes are the outcome's, which the table shows). Vertices are rounded to
``ROUND_MM`` and stored as float32 typed arrays (plotly's base64 "bdata"), faces as int32.
"""

from __future__ import annotations

import json

import numpy as np

__all__ = ["COARSE_STEP_VOXELS", "ROUND_MM", "STYLE", "figure_dict", "figure_json", "isosurface", "plotly_js"]

#: Marching-cubes step (voxels) of the body surface, the largest one (the other parts: every voxel).
COARSE_STEP_VOXELS = 2
#: Vertex coordinates rounded to this (mm): far below the model's 0.5-1 mm voxels, and it compresses.
ROUND_MM = 0.01
#: Colour and opacity of each part (the legend under the view names them).
STYLE = {"body": ("#c8bca8", 0.18), "cement": ("#e07b00", 1.0), "cavity": ("#00a0c0", 0.45),
         "leak": ("#20c020", 1.0)}
_PART_NAME = {"body": "vertebral body", "cement": "cement in the body", "cavity": "balloon cavity",
              "leak": "cement outside the body (leak)"}


def plotly_js() -> str:
    """plotly.js as shipped in the installed plotly wheel, to inline in a page (no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def isosurface(field: np.ndarray, level: float, affine_mm: np.ndarray, step: int = 1):
    """(vertices (n, 3) float32 in RAS+ mm, faces (m, 3) int32) of the ``level`` iso-surface of ``field`` by
    marching cubes, closed at the grid's edge (zero padding); None when no voxel reaches ``level``."""
    from skimage.measure import marching_cubes

    f = np.asarray(field, dtype=np.float32)
    if not (f >= level).any():
        return None
    p = np.pad(f, 1)
    verts, faces, _, _ = marching_cubes(p, level=level, step_size=step, allow_degenerate=False)
    ijk = verts - 1.0  # undo the padding
    xyz = ijk @ np.asarray(affine_mm, float)[:3, :3].T + np.asarray(affine_mm, float)[:3, 3]
    xyz = np.round(xyz / ROUND_MM) * ROUND_MM
    return xyz.astype(np.float32), faces.astype(np.int32)


def _parts(outcome, display_min: float) -> dict:
    """{part: (surface, volume in mL)} of one procedure's outcome (parts with nothing to draw left out)."""
    model = outcome.model_after
    voxel_ml = float(np.prod(model.spacing_m)) * 1e6
    body = np.asarray(model.body_mask, bool)
    f = np.asarray(outcome.cement_fraction, np.float32)
    fields = {"body": (body.astype(np.float32), 0.5, COARSE_STEP_VOXELS),
              "cement": (np.where(body, f, 0.0), display_min, 1), "leak": (np.where(body, 0.0, f), display_min, 1)}
    cav = outcome.fields.get("balloon_cavity")
    if cav is not None:
        fields["cavity"] = ((np.asarray(cav) > 0.5).astype(np.float32), 0.5, 1)
    out = {}
    for part, (field, level, step) in fields.items():
        surf = isosurface(field, level, model.affine_mm, step)
        if surf is not None:
            shown = field >= level
            out[part] = (surf, float(field[shown].sum()) * voxel_ml if part in ("cement", "leak")
                         else float(shown.sum()) * voxel_ml)
    return out


def _hover(name: str, part: str, volume_ml: float, outcome) -> str:
    text = f"{name} {_PART_NAME[part]}: {volume_ml:.2f} mL"
    inj = getattr(outcome, "injection", None)
    if part == "cement" and inj is not None:
        text += f" (of {inj.injected_ml:.2f} mL injected, {inj.leaked_ml:.3f} mL leaked, as in the table)"
    return text


def _mesh_trace(name: str, part: str, surf, volume_ml: float, outcome, scene: str) -> dict:
    (xyz, faces), (colour, opacity) = surf, STYLE[part]
    return {"type": "mesh3d", "name": f"{name}: {_PART_NAME[part]}", "scene": scene,
            "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "i": faces[:, 0], "j": faces[:, 1], "k": faces[:, 2],
            "color": colour, "opacity": opacity, "flatshading": False, "showlegend": True,
            "hoverinfo": "text", "text": _hover(name, part, volume_ml, outcome),
            "lighting": {"ambient": 0.45, "diffuse": 0.8, "specular": 0.15, "roughness": 0.6}}


def _scene(domain_x: tuple[float, float]) -> dict:
    axis = {"showbackground": False, "showgrid": True, "gridcolor": "#e4e4e4", "zeroline": False,
            "tickfont": {"size": 9}}
    return {"domain": {"x": list(domain_x), "y": [0.0, 1.0]}, "aspectmode": "data",
            "xaxis": {**axis, "title": {"text": "R (mm)"}}, "yaxis": {**axis, "title": {"text": "A (mm)"}},
            "zaxis": {**axis, "title": {"text": "S (mm)"}},
            "camera": {"eye": {"x": 1.4, "y": 1.4, "z": 0.8}, "up": {"x": 0, "y": 0, "z": 1}}}


def figure_dict(outcomes: dict, display_min: float) -> dict | None:
    """The plotly figure (data, layout) of ``outcomes`` ({"VP": Outcome, "KP": Outcome}), one scene each; None when
    nothing is drawn."""
    import plotly.graph_objects as go

    data, layout, n = [], {}, len(outcomes)
    titles = []
    for i, (name, o) in enumerate(outcomes.items()):
        scene = "scene" if i == 0 else f"scene{i + 1}"
        parts = _parts(o, display_min)
        for part in ("body", "cavity", "cement", "leak"):
            if part in parts:
                data.append(_mesh_trace(name, part, *parts[part], o, scene))
        titles.append({"text": f"<b>{name}</b>", "x": (i + 0.5) / n, "y": 1.0, "xref": "paper", "yref": "paper",
                       "showarrow": False, "font": {"size": 14}})
        layout[scene] = _scene((i / n, (i + 1) / n))
    if not data:
        return None
    legend = {"orientation": "h", "y": -0.02, "font": {"size": 11},
              "entrywidth": 0.25, "entrywidthmode": "fraction"}  # fixed widths: no overlap from text measurement
    layout.update({"height": 520, "margin": {"l": 0, "r": 0, "t": 24, "b": 0}, "annotations": titles,
                   "legend": legend, "paper_bgcolor": "white"})
    fig = go.Figure(data=data, layout=layout)
    return json.loads(fig.to_json())  # numpy arrays as base64 typed arrays (plotly >= 6)


def figure_json(outcomes: dict, display_min: float) -> str | None:
    """:func:`figure_dict` as JSON that is safe inside a <script> element."""
    fig = figure_dict(outcomes, display_min)
    return None if fig is None else json.dumps(fig, separators=(",", ":")).replace("</", "<\\/")
