"""Generator options are refused in one line when they break the family's schema
(generators.options), for every family, and every shipped preset passes; they are resolved once,
completely (nested autoencoder options included) and idempotently."""

import pytest

from audit.core.errors import UserError
from generators import checkpoint as ckpt
from generators import registry
from generators.autoencoder import AE_DEFAULTS
from generators.options import check_options, resolve_options

FAMILIES = ["gan", "vae", "ddpm", "ldm", "flow", "cine"]


def _cls(name):
    return registry.get(name).cls


@pytest.mark.parametrize("name", FAMILIES)
def test_defaults_and_every_preset_pass(name):
    cls = _cls(name)
    cls.check_options({})
    # every default given explicitly (guidance_scale is read from sample.guidance_scale in a run)
    cls.check_options({k: v for k, v in cls.defaults.items() if k != "guidance_scale"})
    for preset, keys in cls.presets.items():
        given = {k.split(".", 1)[1]: v for k, v in keys.items() if k.startswith("generator_options.")}
        cls.check_options(given)


@pytest.mark.parametrize("name, given, needle", [
    ("cine", {"frames": "abc"}, "option frames must be an integer, got 'abc'"),
    ("cine", {"frames": 1}, "option frames must be >= 2"),
    ("cine", {"ae": {"latent_channels": "x"}}, "option ae.latent_channels must be an integer"),
    ("cine", {"ae": {"nope": 1}}, "unknown option(s) in ae ['nope']"),
    ("gan", {"z_dim": -1}, "option z_dim must be >= 1, got -1"),
    ("gan", {"z_dim": 3.0}, "option z_dim must be an integer, got 3.0"),
    ("gan", {"channels": [0]}, "option channels must be a non-empty list of integers >= 1"),
    ("gan", {"channels": []}, "option channels must be a non-empty list of integers >= 1"),
    ("gan", {"lr_g": float("inf")}, "option lr_g must be a finite number, got inf"),
    ("gan", {"lr_g": -1e-4}, "option lr_g must be >= 0"),
    ("gan", {"spectral_norm": 1}, "option spectral_norm must be true or false"),
    ("gan", {"zdim": 8}, "unknown option(s) ['zdim']"),
    ("ldm", {"norm_groups": 7}, "channels [64, 128, 128] must all be divisible by norm_groups 7"),
    ("ldm", {"ae": {"channels": [8, 12], "norm_groups": 8}}, "option ae.channels [8, 12] must all be divisible"),
    ("ldm", {"p_uncond": 1.5}, "option p_uncond is a probability"),
    ("ldm", {"guidance_scale": 3.0}, "set the guidance with sample.guidance_scale"),
    ("ddpm", {"prediction": "x0"}, "option prediction must be one of v_prediction, epsilon"),
    ("vae", {"beta": "big"}, "option beta must be a number"),
    ("external", {"samples": 3}, "must be the path of an .npz file"),
    ("external", {}, "needs --samples"),
    ("external", {"samples": "a.npz", "x": 1}, "unknown option(s) ['x']"),
])
def test_bad_options_are_one_line_user_errors(name, given, needle):
    with pytest.raises(UserError) as err:
        _cls(name).check_options(given)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_start_options_may_be_zero_and_ints_pass_for_numbers():
    check_options("t", {"adv_start": 0, "lr": 1}, {"adv_start": 200, "lr": 1e-3})
    with pytest.raises(UserError, match="adv_start must be >= 0"):
        check_options("t", {"adv_start": -1}, {"adv_start": 200})


def _preset_options(cls, preset):
    keys = cls.presets.get(preset, {})
    return {k.split(".", 1)[1]: v for k, v in keys.items() if k.startswith("generator_options.")}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("preset", ["smoke", "quick", "full"])
def test_resolution_is_complete_and_idempotent(name, preset):
    cls = _cls(name)
    given = _preset_options(cls, preset)
    resolved = cls.resolve_options(given)
    assert set(resolved) == set(cls.defaults)
    assert cls.resolve_options(resolved) == resolved  # a config.json of resolved options rebuilds the same
    if "ae" in cls.defaults:  # the nested autoencoder options are complete: no consumer merges AE_DEFAULTS
        assert set(resolved["ae"]) == set(AE_DEFAULTS)
        assert resolved["ae"] == {**AE_DEFAULTS, **cls.defaults["ae"], **given.get("ae", {})}
    g = cls()
    g._set_options(given)
    assert g.options == resolved


def test_resolution_layers_and_number_types():
    defaults = {"lr": 1e-3, "steps": 5, "ae": {"steps": 600}}
    out = resolve_options("t", {"lr": 1, "ae": {"lr": 1}}, defaults, nested={"ae": {"steps": 800, "lr": 1e-3}})
    # a number given as an integer becomes the float its default is; nested values are kept as given
    # (the autoencoder cache key hashes them)
    assert out == {"lr": 1.0, "steps": 5, "ae": {"steps": 600, "lr": 1}}
    assert isinstance(out["lr"], float) and isinstance(out["ae"]["lr"], int)
    assert resolve_options("t", out, defaults, nested={"ae": {"steps": 800, "lr": 1e-3}}) == out


def test_an_older_checkpoint_config_resumes_but_a_missing_option_does_not(tmp_path):
    cls = _cls("ldm")
    given = _preset_options(cls, "smoke")
    older = {**cls.resolve_options(given), "ae": given["ae"]}  # how an older version stored the options
    current = {"options": cls.resolve_options(given), "shape": [16, 16]}
    ckpt.save(tmp_path, generator="ldm", model_config={"options": older, "shape": [16, 16]}, step=1, weights={})
    with pytest.raises(UserError, match="model config differs in options"):
        ckpt.load(tmp_path, generator="ldm", model_config=current)
    assert ckpt.load(tmp_path, generator="ldm", model_config=current, upgrade=cls.upgrade_model_config).step == 1
    # an option the checkpoint was trained without is not filled in: that fit is refused, as before
    no_prediction = {k: v for k, v in older.items() if k != "prediction"}
    assert cls.upgrade_model_config({"options": no_prediction})["options"] != current["options"]
