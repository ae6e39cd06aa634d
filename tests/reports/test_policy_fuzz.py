"""Fuzzing the policy loader (:func:`reports.policy.load_policy` / :func:`parse_policy`): any
TOML file or parsed table either is a valid policy or raises :class:`UserError` naming the file.

Derandomized (the same examples on every run, so CI is reproducible) and kept small."""

import copy
import math
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.core.errors import UserError
from reports.policy import OPS, default_policy_path, load_policy, parse_policy

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

DEFAULT = tomllib.loads(default_policy_path().read_text("utf-8"))
CRITERION_KEYS = sorted({k for c in DEFAULT["criterion"] for k in c} | {"warn_threshold", "colour"})

#: what TOML can hold (tomllib's types), with the awkward numbers: huge ints, inf, nan
scalars = (st.booleans() | st.integers(-(2**80), 2**80) | st.sampled_from([10**400, -(10**400)])
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=10)
           | st.sampled_from(["*", "privacy", "anatomy", "<=", ">", "incomplete", "advisory", "a b", "x" * 300]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=10)


def _valid_policy(policy):
    assert policy.name and policy.criteria and len({c.id for c in policy.criteria}) == len(policy.criteria)
    for c in policy.criteria:
        assert c.op in OPS and math.isfinite(c.threshold)
        assert c.warn_threshold is None or math.isfinite(c.warn_threshold)
        assert len(c.metric) >= 2 and all(isinstance(k, str) for k in c.metric)


def _parse_or_user_error(doc):
    try:
        policy = parse_policy(doc, source="fuzz.toml")
    except UserError as exc:
        assert "fuzz.toml" in str(exc) and "\n" not in str(exc), str(exc)
        return None
    _valid_policy(policy)
    return policy


@st.composite
def mutated_policies(draw):
    """The shipped default policy with one to three keys (top level or in a criterion) replaced
    by any TOML value or deleted."""
    doc = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()) or not doc.get("criterion") or not isinstance(doc["criterion"], list):
            table, keys = doc, ["policy_version", "name", "description", "criterion", "extra"]
        else:
            table = draw(st.sampled_from(doc["criterion"]))
            if not isinstance(table, dict):
                continue
            keys = CRITERION_KEYS
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 3)) == 0:
            table.pop(key, None)
        else:
            table[key] = draw(values)
    return doc


@FUZZ
@given(doc=mutated_policies())
def test_mutated_policy_tables(doc):
    _parse_or_user_error(doc)


@FUZZ
@given(doc=values)
def test_arbitrary_values(doc):
    _parse_or_user_error(doc)


TOML_VALUES = ["0.6", "inf", "-inf", "nan", "1e999", "1" + "0" * 30, "1" + "0" * 5000, "true", '"x"', "[]",
               '["privacy"]', '["privacy", "x"]', '["anatomy", "*", "auc"]', "1979-05-27", "{a = 1}", '"<="', "[[[1]]]"]


@st.composite
def policy_texts(draw):
    """A small policy file, then a few of its values swapped for awkward TOML literals, or cut."""
    lines = ["policy_version = 1", 'name = "fuzz"', "[[criterion]]", 'id = "c1"', 'title = "t"',
             'metric = ["privacy", "attacks", "*", "image", "auc"]', 'op = "<="', "threshold = 0.6",
             "warn_threshold = 0.65", 'rationale = "r"']
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.sampled_from([0, 1, 3, 4, 5, 6, 7, 8, 9]))
        lines[i] = lines[i].split(" = ")[0] + " = " + draw(st.sampled_from(TOML_VALUES))
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@FUZZ
@given(text=policy_texts() | st.text(max_size=200))
def test_policy_files(tmp_path, text):
    path = tmp_path / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        policy = load_policy(path)
    except UserError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        return
    _valid_policy(policy)


@pytest.mark.parametrize("value, needle", [
    ("inf", "key 'threshold' must be finite, not inf"),
    ("nan", "key 'threshold' must be finite, not nan"),
    ("-inf", "key 'threshold' must be finite, not -inf"),
    ("1" + "0" * 400, "key 'threshold' must be finite, not 1000000"),
    ("1" + "0" * 5000, "not valid TOML: Exceeds the limit"),
])
def test_non_finite_thresholds(tmp_path, value, needle):
    path = tmp_path / "p.toml"
    path.write_text('policy_version = 1\nname = "t"\n[[criterion]]\nid = "c"\ntitle = "t"\n'
                    f'metric = ["privacy", "x"]\nop = "<="\nthreshold = {value}\nrationale = "r"\n')
    with pytest.raises(UserError, match=r"p\.toml") as exc:
        load_policy(path)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    path.write_text(path.read_text().replace(f"threshold = {value}", f"threshold = 0.5\nwarn_threshold = {value}"))
    with pytest.raises(UserError, match=r"p\.toml"):
        load_policy(path)


def test_huge_values_in_messages_and_deep_nesting(tmp_path):
    doc = copy.deepcopy(DEFAULT)
    doc["name"] = 10**5000  # str() of it raises ValueError
    with pytest.raises(UserError, match="key 'name' must be a string, not an integer"):
        parse_policy(doc, source="big.toml")
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match=r"deep\.toml: not valid TOML"):
        load_policy(path)
