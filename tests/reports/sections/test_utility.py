"""The utility section's statement on synthetic data against the augmentation baseline."""

from __future__ import annotations

from audit.core.results import metric, unavailable
from reports.sections.utility import augmentation_sentences


def test_one_sentence_per_setting_and_vendor_with_the_verdict():
    util = {"vs_augmentation": {
        "real+synthetic": {"A": {"dice_diff": metric(0.021, "1", ci=(0.004, 0.038), n=12, notes="verdict: improves", method="m")},
                           "D": {"dice_diff": metric(-0.002, "1", ci=(-0.02, 0.015), n=9, notes="verdict: no evidence; 1 empty", method="m")}},
        "synthetic": {"A": {"dice_diff": metric(-0.2, "1", ci=(-0.25, -0.15), n=12, notes="verdict: worsens", method="m")}},
        "real+sdedit": {"A": {"dice_diff": unavailable("generator 'gan' has no SDEdit sampler")}},
    }}
    s = augmentation_sentences(util)
    assert s[0] == ("real+synthetic, vendor A: beats real+augmentation (mean Dice difference +0.021 [+0.004, +0.038], "
                    "paired over 12 subjects).")
    assert "vendor D: is not distinguishable from real+augmentation" in s[1]
    assert "synthetic, vendor A: is worse than real+augmentation" in s[2]
    assert "not compared with real+augmentation (generator 'gan' has no SDEdit sampler)" in s[3]
    assert augmentation_sentences({}) == []
