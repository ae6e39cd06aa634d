"""The independent judge network: an ACDC-trained segmentation CNN none of our generators saw.

Anatomy metrics (judge Dice, plausibility, clinical indices) and the phantom's realism gate
run it on every image, so it must be (a) exactly the published network (sha256-checked,
:mod:`.fetch`), (b) fed exactly as it was trained (:mod:`.preprocess`, the one module that
owns the input recipe and its inverse), and (c) fast on a CPU (:mod:`.graph`: int8 static
quantisation). See :class:`Judge` for the API.
"""

from __future__ import annotations

from .calibration import LabelledSlices, dice_per_class, phantom_slices
from .fetch import JUDGE_SHA256, JudgeUnavailable, fetch_judge, sha256_file
from .network import Judge, int8_model_path
from .preprocess import DEFAULT_FOV, SliceGeometry, from_network, plan_geometry, to_network

__all__ = [
    "Judge",
    "JudgeUnavailable",
    "JUDGE_SHA256",
    "fetch_judge",
    "sha256_file",
    "int8_model_path",
    "DEFAULT_FOV",
    "SliceGeometry",
    "plan_geometry",
    "to_network",
    "from_network",
    "LabelledSlices",
    "phantom_slices",
    "dice_per_class",
]
