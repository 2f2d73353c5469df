"""The tissue label vocabulary of the voxel model: every label number and the groups the physics uses.

This is the only module that spells a label number (``tests/test_labels.py`` scans the source for others). It is a
leaf module: it imports only numpy, so every layer (anatomy's phantom, the model, physics, procedures, report) can
import it without a cycle. A voxel of the model carries one of these labels (uint8):

====  ===================  ==================================================================================
 0    outside              soft tissue around the level (paraspinal muscle, fat): route C's far side
 1    trabecular           cancellous bone of the body: porous (cement flows), crushable by the balloon
 2    cortex               the body's lateral, anterior and posterior wall (0.35 mm shell smeared over 1 mm)
 3    endplate             the superior and inferior bony endplates
 4    canal                the spinal canal (epidural space and dura): route C's far side, thermal risk
 5    basivertebral        basivertebral foramen / vein: a venous exit to the epidural plexus (route B)
 6    segmental            segmental / nutrient vein exit through the anterolateral cortex (route S)
 7    defect               fracture cleft, cortical or endplate break, balloon cavity: open, porous
 8    disc                 intervertebral disc: route D's far side (through an endplate break)
10    vein_channel         intraosseous vein (basivertebral plexus, anterolateral nutrient vein) inside the body:
                           a Poiseuille tube smeared over the voxel with the trabecular bone around it; porous
                           (cement flows along it and into the pore space); drains through 5 / 6 (model/veins.py)
====  ===================  ==================================================================================

The phantom's construction map also uses :data:`POSTERIOR_ELEMENT` (9: pedicles, laminae, spinous process); the
model turns it into ``OUTSIDE`` and keeps it as ``Vertebra.posterior_mask``, so it is not one of :data:`LABELS`.

Groups are tuples of label numbers (``np.isin(labels, GROUP)``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "OUTSIDE", "TRABECULAR", "CORTEX", "ENDPLATE", "CANAL", "BASIVERTEBRAL", "SEGMENTAL", "DEFECT", "DISC",
    "VEIN_CHANNEL", "POSTERIOR_ELEMENT", "LABELS", "LABEL_NAMES", "BODY", "SHELL", "POROUS", "CANCELLOUS", "VEINS", "INJECTABLE", "is_body",
    "member_table",
]

OUTSIDE = 0
TRABECULAR = 1
CORTEX = 2
ENDPLATE = 3
CANAL = 4
BASIVERTEBRAL = 5
SEGMENTAL = 6
DEFECT = 7
DISC = 8
#: Posterior elements in the phantom's tissue map only (bone outside the body; not a label of the model).
POSTERIOR_ELEMENT = 9
#: An intraosseous vein channel (model/veins.py); 10, after the phantom's 9.
VEIN_CHANNEL = 10

#: name -> label number (the phantom and the CT model use the same table).
LABELS: dict[str, int] = {
    "outside": OUTSIDE,
    "trabecular": TRABECULAR,
    "cortex": CORTEX,
    "endplate": ENDPLATE,
    "canal": CANAL,
    "basivertebral": BASIVERTEBRAL,
    "segmental": SEGMENTAL,
    "defect": DEFECT,
    "disc": DISC,
    "vein_channel": VEIN_CHANNEL,
}
#: label number -> name
LABEL_NAMES: dict[int, str] = {v: k for k, v in LABELS.items()}

#: The vertebral body: bone, its shell, the venous exits through it and its clefts (meshed by the FE, crushable
#: region of the balloon, denominator of fill fractions).
BODY = (TRABECULAR, CORTEX, ENDPLATE, BASIVERTEBRAL, SEGMENTAL, DEFECT, VEIN_CHANNEL)
#: The bony shell of the body.
SHELL = (CORTEX, ENDPLATE)
#: Voxels the cement flows through as a porous medium (Darcy): trabecular bone, open clefts/defects and the
#: intraosseous vein channels (a tube in parallel with the bone around it).
POROUS = (TRABECULAR, DEFECT, VEIN_CHANNEL)
#: Cancellous bone with the veins in it: what a kyphoplasty balloon crushes and compacts (a tamped vein closes).
CANCELLOUS = (TRABECULAR, VEIN_CHANNEL)
#: Venous exits (route B, route S): the foramina where the channels leave the body.
VEINS = (BASIVERTEBRAL, SEGMENTAL)
#: Where a cannula tip may sit: the porous voxels and the shell it pierces.
INJECTABLE = POROUS + SHELL


def is_body(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the vertebral body (:data:`BODY`)."""
    return np.isin(labels, BODY)


def member_table(group: tuple[int, ...]) -> np.ndarray:
    """Boolean look-up table of a label group, ``table[labels]`` = ``np.isin(labels, group)`` for the model's uint8
    labels: one gather, for the short columns that the balloon and the reduction test one at a time (np.isin costs
    ~17 us on a 60-voxel column, the gather ~1 us)."""
    table = np.zeros(256, dtype=bool)
    table[list(group)] = True
    table.setflags(write=False)
    return table
