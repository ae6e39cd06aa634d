"""The judge's check of the synthetic image/mask pairs (``utility.synthetic_masks``): closed-form
cases on hand-made anatomy sections, the notes it puts on the synthetic settings, the option's
range check and the report sentence."""

from __future__ import annotations

import pytest

from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from audit.pipeline.utility_masks import doubtful_note, mask_check, mask_source_of
from audit.pipeline.utility_options import UtilityOptions
from reports.sections.utility import mask_sentences

SOURCE = "the generator's own segmentation decoder, read from the frames it generated"


def _agreement(value: float, lo: float, hi: float, n: int = 40) -> dict:
    return {"dice": {"mean": metric(value, "1", method="judge vs mask", ci=(lo, hi), n=n)}}


def _anatomy(synthetic: float, ceiling: float = 0.9) -> dict:
    return {"judge_agreement": _agreement(synthetic, synthetic - 0.02, synthetic + 0.02),
            "judge_agreement_real_test": _agreement(ceiling, ceiling - 0.01, ceiling + 0.01)}


def test_fraction_of_the_ceiling_and_verdicts():
    check = mask_check(_anatomy(0.855), mask_source=SOURCE, threshold=0.9)
    frac = check["fraction_of_ceiling"]
    assert frac["value"] == pytest.approx(0.855 / 0.9)  # 0.95
    assert frac["ci_low"] == pytest.approx(0.835 / 0.9) and frac["ci_high"] == pytest.approx(0.875 / 0.9)
    assert "verdict: consistent" in frac["notes"] and frac["params"] == {"ceiling": 0.9, "threshold": 0.9}
    assert check["judge_dice"]["value"] == 0.855 and check["judge_dice"]["n"] == 40
    assert mask_source_of(check["judge_dice"]) == SOURCE
    assert doubtful_note(check) is None

    low = mask_check(_anatomy(0.72), mask_source=SOURCE, threshold=0.9)  # 0.80 of the ceiling
    assert low["fraction_of_ceiling"]["value"] == pytest.approx(0.8)
    assert "verdict: doubtful" in low["fraction_of_ceiling"]["notes"]
    note = doubtful_note(low)
    assert note and "0.80" in note and "label noise" in note
    # the threshold is the option's: the same pairs pass a looser one
    assert "verdict: consistent" in mask_check(_anatomy(0.72), mask_source=SOURCE, threshold=0.75)["fraction_of_ceiling"]["notes"]
    # exactly at the threshold counts as consistent
    assert "consistent" in mask_check(_anatomy(0.81), mask_source=SOURCE, threshold=0.9)["fraction_of_ceiling"]["notes"]


def test_missing_figures_are_unavailable_with_the_reason():
    none = mask_check(None, mask_source=SOURCE, threshold=0.9)
    assert none["judge_dice"]["status"] == "unavailable" and "anatomy stage not run" in none["judge_dice"]["reason"]
    off = mask_check({"judge_agreement": unavailable("anatomy audit switched off (audit.anatomy=false)")},
                     mask_source=SOURCE, threshold=0.9)
    assert "audit.anatomy=false" in off["fraction_of_ceiling"]["reason"]
    no_ceiling = mask_check({"judge_agreement": _agreement(0.8, 0.78, 0.82),
                             "judge_agreement_real_test": unavailable("the test split is empty")},
                            mask_source=SOURCE, threshold=0.9)
    assert no_ceiling["judge_dice"]["value"] == 0.8  # the pairs' own figure is still reported
    assert "test split is empty" in no_ceiling["fraction_of_ceiling"]["reason"]
    assert doubtful_note(no_ceiling) is None and doubtful_note(none) is None


def test_option_range():
    UtilityOptions(mask_agreement=0.0).check()
    UtilityOptions(mask_agreement=1.0).check()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(UserError, match="audit.utility_mask_agreement"):
            UtilityOptions(mask_agreement=bad).check()


def test_report_sentence_names_the_source_and_the_verdict():
    good = mask_sentences({"synthetic_masks": mask_check(_anatomy(0.855), mask_source=SOURCE, threshold=0.9)})
    assert len(good) == 1 and SOURCE in good[0] and "0.855 [0.835, 0.875]" in good[0] and "consistent" in good[0]
    bad = mask_sentences({"synthetic_masks": mask_check(_anatomy(0.5), mask_source=SOURCE, threshold=0.9)})
    assert "doubtful labels" in bad[0]
    gone = mask_sentences({"synthetic_masks": mask_check(None, mask_source=SOURCE, threshold=0.9)})
    assert gone[0].startswith("Not checked:")
    assert mask_sentences({}) == []


def test_utility_frames_option():
    from audit.pipeline.config import resolve_config
    from audit.pipeline.utility_options import options_from_config
    from generators import registry

    assert UtilityOptions().frames == ""  # = data.frames
    with pytest.raises(UserError, match="audit.utility_frames"):
        UtilityOptions(frames="systole").check()
    # the cine presets score real ED/ES labels only: synthetic frames cover the rest of the cycle
    for preset in ("smoke", "quick", "full"):
        cfg = resolve_config(preset=preset, generator="cine", generator_preset=registry.get("cine").presets[preset])
        assert cfg.data.frames == "all" and options_from_config(cfg).frames == "ed_es"
    assert options_from_config(resolve_config(preset="quick", generator="ldm")).frames == ""
