"""Downstream utility audit: segmentation nets trained on real, synthetic, real+synthetic and
real+SDEdit data, scored on real subjects of the seen vendors and of a held-out vendor.

* :mod:`audit.utility.stage` -- the ``utility`` stage (data design, settings, results section);
* :mod:`audit.utility.net` -- the MONAI BasicUNet, its augmentation and training loop;
* :mod:`audit.utility.metrics` -- Dice / HD95 / ASSD per image and their subject x seed statistics.
"""

from audit.utility.stage import run_utility

__all__ = ["run_utility"]
