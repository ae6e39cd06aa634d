"""Fuzzing the configuration: ``--set KEY=VALUE`` parsing and overrides, and ``--config`` files.
Any input either resolves to a config that ``config.json`` can hold (strict JSON: no NaN or
Infinity) with seeds in [0, 2**32), or raises one :class:`UserError` line -- never another
exception.

Derandomized (the same examples on every run, so CI is reproducible) and kept small."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.pipeline import config as C
from audit.core.errors import UserError

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

KNOWN = sorted(C.flat_keys(C.RunConfig()))
#: mostly keys that exist (an unknown key ends every example at the first check)
keys = st.one_of(st.sampled_from(KNOWN), st.sampled_from(KNOWN), st.sampled_from(KNOWN),
                 st.sampled_from(["generator_options.width", "generator_options.a.b", "generator_options", "data",
                                  "train.lr.x", "", " seed ", "generator_options.a"]),
                 st.text(min_size=1, max_size=12))
#: CLI strings: numbers in every spelling Python's float() and int() take, JSON fragments, junk
texts = st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 400, "[1, NaN]",
                     '{"a": Infinity}']),
    st.sampled_from(["-1", "0", "1", "3", str(2**32), str(2**32 - 1), "0.5", "1.5", "9" * 5000, "true", "off", "[1, 2]",
                     '{"a": 1}', "[" * 3000, "null", "", "cuda:0", "cpu", "smoke", "ddim", "subject"]),
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12))
#: values as a --config file holds them (JSON or TOML decoded)
values = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | texts,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=8)


def _resolved_or_user_error(**kwargs):
    try:
        cfg = C.resolve_config(preset="smoke", **kwargs)
    except UserError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 1000, str(exc)
        return None
    json.dumps(C.config_to_dict(cfg), allow_nan=False)  # what prepare writes as config.json
    for key in C.SEED_KEYS:
        assert 0 <= C.flat_keys(cfg)[key] < 2**32
    for value in C.flat_keys(cfg).values():
        assert not (isinstance(value, float) and not math.isfinite(value))
    return cfg


NUMBERS = ["inf", "-inf", "nan", "NaN", "Infinity", "1e999", "1" + "0" * 400, "-1", "0", "1", str(2**32),
           str(2**32 - 1), "0.5", "1e-300", "[1, NaN]", '{"a": Infinity}']


@st.composite
def set_items(draw):
    """``--set`` arguments: ``KEY=VALUE`` with a number-like value half the time (so that float
    and seed keys meet inf, nan and out-of-range values), now and then one without ``=``."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.text(max_size=20))
    value = draw(st.sampled_from(NUMBERS)) if draw(st.booleans()) else draw(texts)
    return f"{draw(keys)}={value}"


@FUZZ
@given(items=st.lists(set_items(), max_size=3))
def test_set_options(items):
    try:
        overrides = C.parse_set_options(items)
    except UserError as exc:
        assert "--set" in str(exc) and "\n" not in str(exc)
        return
    assert all(isinstance(k, str) and k for k in overrides)
    _resolved_or_user_error(overrides=overrides)


@FUZZ
@given(overrides=st.dictionaries(keys, values, max_size=4))
def test_overrides_of_any_type(overrides):
    _resolved_or_user_error(overrides=overrides)


SPECIAL_NUMBERS = [math.nan, math.inf, -math.inf, 1e308, 10**400, -1, 0, 2**32, 2**32 - 1, 0.5, 3]


@st.composite
def config_docs(draw):
    """A nested config document: a few known keys (and now and then an unknown one) with any values."""
    doc: dict = {}
    for key in draw(st.lists(keys, max_size=3, unique=True)):
        *sections, leaf = key.split(".")
        table = doc
        for section in sections:
            table = table.setdefault(section, {})
            if not isinstance(table, dict):
                break
        else:  # half the time a number that a float or seed key must refuse
            table[leaf] = draw(st.sampled_from(SPECIAL_NUMBERS)) if draw(st.booleans()) else draw(values)
    return doc


@FUZZ
@given(doc=config_docs(), toml=st.booleans())
def test_config_files(tmp_path, doc, toml):
    if toml:
        path = tmp_path / "c.toml"
        path.write_text("\n".join(f"{k} = {v}" for k, v in _toml_items(doc)) + "\n")
    else:
        path = tmp_path / "c.json"
        path.write_text(json.dumps(doc))  # NaN and Infinity included: Python's reader takes them
    try:
        C.load_config_file(path)
    except UserError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    _resolved_or_user_error(config_file=path)


def _toml_items(doc, prefix=""):
    """The scalars of ``doc`` as dotted TOML keys and literals (inf and nan as TOML spells them);
    lists and None are skipped."""
    for k, v in doc.items():
        if not k or not all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
            continue  # a TOML bare key; quoting arbitrary text for TOML is not what is tested here
        key = prefix + k
        if isinstance(v, dict):
            yield from _toml_items(v, key + ".")
        elif isinstance(v, bool):
            yield key, "true" if v else "false"
        elif isinstance(v, (int, float)):
            yield key, ("nan" if v != v else "inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        elif isinstance(v, str):
            yield key, json.dumps(v)


@pytest.mark.parametrize("overrides, needle", [
    ({"train.ema_decay": "inf"}, "config key 'train.ema_decay' must be a finite number, got inf"),
    ({"train.ema_decay": float("nan")}, "config key 'train.ema_decay' must be a finite number, got nan"),
    ({"dp.epsilon": "nan"}, "config key 'dp.epsilon' must be a finite number, got nan"),
    ({"dp.delta": "-inf"}, "config key 'dp.delta' must be a finite number, got -inf"),
    ({"dp.noise_multiplier": "inf"}, "config key 'dp.noise_multiplier' must be a finite number"),
    ({"generator_options.sched": "[1, NaN]"}, "config key 'generator_options.sched[1]' must be a finite number"),
    ({"generator_options": '{"a": {"b": Infinity}}'}, "config key 'generator_options.a.b' must be a finite number"),
    ({"dp.max_grad_norm": 10**400}, "config key 'dp.max_grad_norm' expects a number, got 10000"),
    ({"dp.max_grad_norm": 10**5000}, "config key 'dp.max_grad_norm' expects a number, got <int too large to print>"),
    ({"dp.max_grad_norm": 10**30}, None),
    ({"seed": -1}, "seed must be in [0, 2**32), got -1"),
    ({"seed": 2**32}, "seed must be in [0, 2**32), got 4294967296"),
    ({"seed": 2**32 - 1}, None),
    ({"data.phantom_seed": "-2"}, "data.phantom_seed must be in [0, 2**32), got -2"),
    ({"generator_options.a": "1", "generator_options.a.b": "2"}, "'generator_options.a' is 1, not an object"),
    ({"generator_options.x": "9" * 5000}, None),  # not JSON (too long an int): kept as the string
])
def test_non_finite_values_seeds_and_nesting(overrides, needle):
    if needle is None:
        assert _resolved_or_user_error(overrides=overrides) is not None
        return
    with pytest.raises(UserError) as exc:
        C.resolve_config(preset="smoke", overrides=overrides)
    assert needle in str(exc.value)


def test_config_file_non_finite_and_hostile(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("seed = 1\n[train]\nema_decay = nan\n")
    with pytest.raises(UserError, match="config key 'train.ema_decay' must be a finite number, got nan"):
        C.resolve_config(config_file=toml)
    toml.write_text("[generator_options]\nwhen = 1979-05-27\n")
    with pytest.raises(UserError, match="'generator_options.when' holds a date"):
        C.resolve_config(config_file=toml)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(UserError, match=r"deep\.json is not valid JSON"):
        C.load_config_file(deep)
    big = tmp_path / "big.json"
    big.write_text('{"seed": ' + "9" * 5000 + "}")
    with pytest.raises(UserError, match=r"big\.json is not valid JSON: Exceeds the limit"):
        C.load_config_file(big)
