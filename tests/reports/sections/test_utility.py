"""The utility section's statements: synthetic data against the augmentation baseline, and test-time adaptation."""

from __future__ import annotations

from audit.core.results import metric, unavailable
from reports.sections.utility import adaptation_sentences, augmentation_sentences


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


def test_adaptation_sentences_per_strength_and_unseen_vendor():
    util = {"test_time_adaptation": {"sdedit_0.25": {
        "D": {"vs_raw": {"dice_diff": metric(0.012, "1", ci=(0.003, 0.02), n=15, notes="verdict: improves", method="m")}},
        "external@B": {"vs_raw": {"dice_diff": metric(-0.04, "1", ci=(-0.06, -0.02), n=8, notes="verdict: worsens",
                                                      method="m")}}}}}
    s = adaptation_sentences(util)
    assert s[0] == ("vendor D, restyled at sdedit 0.25: beats the raw scans for the real-trained nets (mean Dice "
                    "difference +0.012 [+0.003, +0.020], paired over 15 subjects).")
    assert "vendor external@B, restyled at sdedit 0.25: is worse than the raw scans" in s[1]
    gone = {"test_time_adaptation": {"adaptation": unavailable("generator 'gan' has no SDEdit sampler")}}
    assert adaptation_sentences(gone) == ["Not done: generator 'gan' has no SDEdit sampler."]
    assert adaptation_sentences({}) == []
