"""The tissue label vocabulary has one home: ``vertaug.model.labels``.

An AST scan of ``src/vertaug`` fails on a tissue-label number spelled anywhere else:

* a comparison of a label-like expression (a name, attribute or subscript whose name contains "lab" or "tissue") with an
  int 0..9 (``labels == 1``, ``lab >= 1``, ``labels[i, j, k] in (1, 2)``);
* ``isin(x, ...)`` whose second argument holds a tuple, list or set with an int 0..9 (``np.isin(lab, (1, 2, 3))``,
  ``np.isin(lab, POROUS + (2, 3))``);
* a dict literal keyed by ints 0..9 that describes tissues (assigned to a name containing "label", "tissue" or "table",
  or whose values are ``*Tissue*(...)`` records);
* an int 0..9 used as a key of a label table (``LABEL_THERMAL[1]``, ``table[0] = SALINE``,
  ``peak_by_label_c.get(3)``) or written into a label array (``labels[mask] = 7``).

The input segmentations (TotalSegmentator / VerSe numbering in ``anatomy/levels.py``) are another vocabulary and are
not tissue labels; nothing there matches these patterns.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from vertaug.model import labels as L

SRC = Path(__file__).resolve().parents[1] / "src" / "vertaug"
HOME = "model/labels.py"
#: the input segmentation's vocabulary (TotalSegmentator v1/v2, VerSe level numbers, vertebrae_body 1/2): not tissue
INPUT_VOCABULARY = {"anatomy/levels.py"}

# TODO(issue 17): remove these entries when the physics split lands (its engineer replaces their label literals with
# vertaug.model.labels at merge); until then they are the only files allowed to spell a label number.
# physics/mechanics.py, also being split, spells none today and is scanned like any other file.
ALLOWED: set[str] = set()  # every module uses model/labels.py (the physics files were the last, split branch)

_LABEL_NAME = re.compile(r"lab|tissue", re.IGNORECASE)
#: names of label constants and groups (``POROUS_LABELS = (1, 7)``, ``TRAB, CORTEX = 1, 2``, ``_EXIT_RULES = {...}``)
_LABEL_CONST = re.compile(r"label|trab|cortex|endplate|canal|bvf|basivert|^seg$|segmental|defect|disc|outside|porous|"
                          r"body|shell|vein|exit", re.IGNORECASE)
_TABLE_NAME = re.compile(r"lab|tissue|^table$", re.IGNORECASE)


def _is_label_int(node) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= max(L.LABEL_NAMES)


def _name_of(node) -> str | None:
    """The name an expression reads from: ``labels``, ``v.labels``, ``labels[i, j]`` -> 'labels'; calls -> None."""
    while isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _matches(node, pattern) -> bool:
    name = _name_of(node)
    return name is not None and bool(pattern.search(name))


def _holds_label_ints(node) -> bool:
    return any(isinstance(n, (ast.Tuple, ast.List, ast.Set)) and any(_is_label_int(e) for e in n.elts)
               for n in ast.walk(node))


def _targets_name(parent) -> str:
    if isinstance(parent, ast.Assign):
        return " ".join(_name_of(t) or "" for t in parent.targets)
    if isinstance(parent, (ast.AnnAssign, ast.AugAssign)):
        return _name_of(parent.target) or ""
    return ""


def scan(source: str, filename: str = "<src>") -> list[str]:
    """Every tissue-label literal in ``source``, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    hits = []

    def hit(node, what):
        hits.append(f"{filename}:{node.lineno}: {what}: {ast.unparse(node)[:80]}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            for a, op, b in zip(sides[:-1], node.ops, sides[1:]):
                for x, y in ((a, b), (b, a)):
                    if _matches(x, _LABEL_NAME) and (_is_label_int(y) or (isinstance(op, (ast.In, ast.NotIn))
                                                                           and _holds_label_ints(y))):
                        hit(node, "label compared with a number")
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if name == "isin" and len(node.args) >= 2 and _holds_label_ints(node.args[1]):
                hit(node, "isin with label numbers")
            if (name == "get" and isinstance(fn, ast.Attribute) and node.args and _is_label_int(node.args[0])
                    and _matches(fn.value, _TABLE_NAME)):
                hit(node, "label table read at a number")
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if k is not None]
            if len(keys) >= 2 and all(_is_label_int(k) for k in keys):
                tissue_values = any(isinstance(v, ast.Call) and "tissue" in (_name_of(v.func) or "").lower()
                                    for v in node.values)
                if tissue_values or _TABLE_NAME.search(_targets_name(parents.get(node))):
                    hit(node, "tissue table keyed by label numbers")
        elif isinstance(node, ast.Subscript):
            direct = isinstance(node.value, (ast.Name, ast.Attribute))  # table[1], not table[n][1]
            if direct and _is_label_int(node.slice) and _matches(node.value, _TABLE_NAME):
                hit(node, "label table indexed by a number")
        if isinstance(node, ast.Assign) and _is_label_int(node.value):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and _matches(t.value, _LABEL_NAME):
                    hit(node, "label number written into a label array")
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
            if any(_LABEL_CONST.search(n) for n in names) and (_is_label_int(node.value)
                                                                or _holds_label_ints(node.value)):
                hit(node, "label constant or group spelled in numbers")
    return hits


def _sources():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel != HOME and rel not in ALLOWED and rel not in INPUT_VOCABULARY:
            yield rel, path.read_text()


def test_no_tissue_label_literal_outside_the_labels_module():
    hits = [h for rel, text in _sources() for h in scan(text, rel)]
    assert not hits, "tissue label numbers outside model/labels.py (use its names and groups):\n" + "\n".join(hits)


def test_allow_list_only_holds_files_that_still_need_it():
    for rel in ALLOWED:
        assert (SRC / rel).is_file(), f"ALLOWED names {rel}, which is gone: drop it from the list"
        assert scan((SRC / rel).read_text(), rel), f"{rel} spells no label number any more: drop it from ALLOWED"


def test_scanner_catches_planted_literals():
    planted = """
import numpy as np
a = labels == 1
b = v.labels[i, j, k] in (1, 2)
c = np.isin(lab, (1, 2, 3, 5, 6, 7))
d = np.isin(lab, POROUS + (2, 3))
e = (lab >= 1) & (lab <= 3)
LABEL_THERMAL = {0: TissueThermal("x"), 1: TissueThermal("y")}
table = {0: AIR, 1: MOULD, 7: CEMENT}
f = LABEL_THERMAL[1].pore_fraction
table[0] = SALINE
labels[mask] = 7
tissue[canal & (tissue == 0)] = CANAL
endplate = res.peak_by_label_c.get(3, float("nan"))
POROUS_LABELS = (1, 7)
TRAB, CORTEX, ENDPLATE = 1, 2, 3
_EXIT_RULES = {"B": (None, (5,)), "C": (7, (0, 4))}
"""
    lines = {int(h.split(":")[1]) for h in scan(planted)}
    assert lines == set(range(3, 18)), sorted(lines)


def test_scanner_leaves_clean_code_alone():
    clean = """
import numpy as np
from vertaug.model.labels import BODY, TRABECULAR, OUTSIDE
a = labels == TRABECULAR
b = np.isin(lab, BODY)
c = arr.ndim == 3
n_parts = 0
GRADE_DEFORMITY = {0: 0.0, 1: 0.2}
BODY_OPENING_MM = 8.0
POROUS = (TRABECULAR, DEFECT)
d = labels.max() > 8
e = np.where(inside, labels, OUTSIDE)
colour = LABEL_STYLE[n][0]
"""
    assert scan(clean) == []


def test_vocabulary_is_consistent():
    # 0..8, then the vein channel (10) after the phantom's construction-only posterior element (9)
    assert set(L.LABEL_NAMES) == set(range(len(L.LABELS) + 1)) - {L.POSTERIOR_ELEMENT}
    assert all(L.LABELS[name] == number for number, name in L.LABEL_NAMES.items())
    for group in (L.BODY, L.SHELL, L.POROUS, L.VEINS, L.INJECTABLE):
        assert set(group) <= set(L.LABEL_NAMES)
    assert set(L.SHELL) | set(L.POROUS) | set(L.VEINS) == set(L.BODY)
    lab = np.array(sorted(L.LABEL_NAMES), dtype=np.uint8)
    assert L.is_body(lab).tolist() == [n in L.BODY for n in sorted(L.LABEL_NAMES)]
