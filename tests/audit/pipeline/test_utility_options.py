"""The audit.utility_* options: one default each (the config's), checked once before any stage."""

from __future__ import annotations

import dataclasses

import pytest

from audit.core.errors import UserError
from audit.pipeline.config import AuditConfig, resolve_config
from audit.pipeline.utility_options import UtilityOptions, options_from_config, parse_tta_strengths


def test_defaults_are_the_config_defaults():
    cfg_fields = {f.name: f.default for f in dataclasses.fields(AuditConfig)}
    for f in dataclasses.fields(UtilityOptions):
        key = f"utility_{f.name}"
        if key == "utility_tta_strengths":  # a comma-separated string in the config, parsed here
            assert f.default == parse_tta_strengths(cfg_fields[key]), key
        elif key in cfg_fields:
            assert f.default == cfg_fields[key], key
    opts = options_from_config(resolve_config(preset="quick", generator="ldm"))
    assert opts == UtilityOptions(threads=opts.threads)


@pytest.mark.parametrize("kw, word", [
    ({"crop": 40}, "utility_crop"), ({"crop": -16}, "utility_crop"), ({"crop": 16}, "utility_crop"), ({"lr": 0.0}, "utility_lr"),
    ({"lr": float("nan")}, "utility_lr"), ({"precision": "fp16"}, "utility_precision"),
    ({"eval_crop": "centre"}, "utility_eval_crop"), ({"postprocess": "lcc"}, "utility_postprocess"), ({"steps": 0}, "utility_steps"),
    ({"synthetic_ratio": -1.0}, "utility_synthetic_ratio"), ({"sdedit_strength": 0.0}, "utility_sdedit_strength"),
    ({"val_fraction": 1.0}, "utility_val_fraction"), ({"predict_scales": "0.1"}, "utility_predict_scales"),
    ({"predict_scales": "big"}, "utility_predict_scales"), ({"predict_scales": ","}, "utility_predict_scales"),
])
def test_bad_values_are_one_clear_error(kw, word):
    with pytest.raises(UserError, match=word):
        UtilityOptions(**kw).check()


def test_spec_carries_the_recipe():
    spec = UtilityOptions(crop=96, precision="fp32", lr=1e-3).spec()
    assert (spec.crop, spec.bf16, spec.lr, spec.strong) == (96, False, 1e-3, False)
    assert UtilityOptions(precision="bf16").spec().bf16 is True
    assert spec.scales == (1.0,)
    assert UtilityOptions(predict_scales="1.1, 0.9,1").spec().scales == (0.9, 1.0, 1.1)
