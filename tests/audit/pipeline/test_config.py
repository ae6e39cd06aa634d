import json

import pytest

from audit.pipeline import config as C
from audit.core.errors import UserError


def test_defaults_are_the_quick_preset():
    cfg = C.resolve_config()
    assert cfg.preset == "quick" and cfg.generator == "ldm" and cfg.seed == 0


def test_preset_values_then_overrides_win():
    cfg = C.resolve_config(preset="smoke", overrides={"train.steps": "7", "data.size": 96})
    assert cfg.train.steps == 7  # override beats preset (smoke sets 20)
    assert cfg.data.size == 96
    assert cfg.sample.n_samples == C.PRESETS["smoke"]["sample.n_samples"]


def test_generator_preset_sits_between_preset_and_user(tmp_path):
    cfg = C.resolve_config(preset="smoke", generator="gan", generator_preset={"train.ema_decay": 0.99, "train.steps": 5})
    assert cfg.train.ema_decay == 0.99 and cfg.train.steps == 5
    cfg = C.resolve_config(preset="smoke", generator_preset={"train.steps": 5}, overrides={"train.steps": 9})
    assert cfg.train.steps == 9


@pytest.mark.parametrize(
    "key, hint",
    [("train.stepz", "train.steps"), ("dataa.size", None), ("nope", None), ("data.size.x", None)],
)
def test_unknown_key_is_an_error_naming_the_key(key, hint):
    with pytest.raises(UserError) as err:
        C.resolve_config(overrides={key: 1})
    assert f"'{key}'" in str(err.value)
    if hint:
        assert hint in str(err.value)


@pytest.mark.parametrize(
    "key, value",
    [("train.steps", "many"), ("train.steps", 1.5), ("train.ema_decay", "fast"), ("audit.privacy", "maybe"), ("data.size", True)],
)
def test_wrong_type_is_an_error(key, value):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        C.resolve_config(overrides={key: value})


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'fast'"):
        C.resolve_config(preset="fast")


def test_range_checks():
    with pytest.raises(UserError, match="data.size"):
        C.resolve_config(overrides={"data.size": 4})
    with pytest.raises(UserError, match="dp.epsilon"):
        C.resolve_config(overrides={"dp.epsilon": -1})
    with pytest.raises(UserError, match="sample.sampler must be one of auto, ddim, euler, heun, midpoint"):
        C.resolve_config(overrides={"sample.sampler": "rk4"})
    assert C.resolve_config(overrides={"sample.sampler": "heun"}).sample.sampler == "heun"


def test_config_file_json_and_toml(tmp_path):
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"train": {"steps": 11}, "seed": 4}))
    t = tmp_path / "c.toml"
    t.write_text("seed = 5\n[data]\nsize = 80\n")
    assert C.resolve_config(config_file=j).train.steps == 11
    cfg = C.resolve_config(config_file=t, overrides={"seed": 6})
    assert cfg.data.size == 80 and cfg.seed == 6
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nsise = 3\n")
    with pytest.raises(UserError, match="data.sise"):
        C.resolve_config(config_file=bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UserError, match="broken.json"):
        C.resolve_config(config_file=broken)


def test_round_trip_and_diff():
    cfg = C.resolve_config(preset="smoke", overrides={"generator_options.width": "32"})
    again = C.config_from_dict(json.loads(json.dumps(C.config_to_dict(cfg))))
    assert again == cfg and again.generator_options == {"width": 32}
    other = C.apply_overrides(cfg, {"seed": 1})
    assert C.config_diff(cfg, other) == ["seed"]


def test_set_option_parsing():
    assert C.parse_set_options(["a.b=1", "c = x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        C.parse_set_options(["novalue"])


@pytest.mark.parametrize("how", ["set", "file"])
def test_a_removed_key_names_its_replacement(how, tmp_path):
    if how == "set":
        call = lambda: C.resolve_config(preset="smoke", generator="gan", overrides={"train.lr": 1e-3})  # noqa: E731
    else:
        f = tmp_path / "c.toml"
        f.write_text("[train]\nlr = 0.001\n")
        call = lambda: C.resolve_config(preset="smoke", generator="gan", config_file=f)  # noqa: E731
    with pytest.raises(UserError, match=r"config key 'train.lr' was removed: set generator_options.lr"):
        call()
