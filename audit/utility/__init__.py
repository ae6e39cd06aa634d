"""Downstream utility metrics: segmentation nets trained on real, synthetic, real+synthetic and
real+SDEdit data, scored on real subjects of the seen vendors and of a held-out vendor.

* :mod:`audit.utility.net` -- the MONAI BasicUNet, its augmentation and training loop;
* :mod:`audit.utility.metrics` -- Dice / HD95 / ASSD per image and their subject x seed statistics.

The ``utility`` stage that designs the data and assembles the results section is
:mod:`audit.pipeline.utility_stage` (the pipeline layer, above this package).
"""
