"""Fuzzing :func:`cohorts.splits.load_splits`: any file either loads as well-formed splits or
raises :class:`UserError` naming it (and, for a structural problem, the field).

Derandomized (the same examples on every run, so CI is reproducible) and kept small."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.core.errors import UserError
from cohorts.splits import SCHEMA, SPLIT_NAMES, UNSEEN, load_splits

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

#: any JSON value Python's reader returns, NaN and Infinity included (``json.dumps`` writes them)
scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=8) | st.sampled_from(list(SPLIT_NAMES) + [UNSEEN, SCHEMA, "standard", "lovo"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6) | st.sampled_from(SPLIT_NAMES), inner, max_size=4),
                           max_leaves=12)

HASH = "ab" * 32


def _valid() -> dict:
    return {"schema": SCHEMA, "kind": "standard", "data_hash": HASH, "seed": 3,
            "fractions": {"train": 0.4, "holdout": 0.2, "reference": 0.2, "test": 0.2}, "heldout_vendor": None,
            "splits": {"train": ["s1", "s2"], "holdout": ["s3"], "reference": ["s4"], "test": ["s5"]},
            "strata": {"A/NOR": {"train": 2, "holdout": 1}}}


@pytest.fixture(scope="module")
def scratch(module_tmp):
    return module_tmp("splits-fuzz")


def _load_or_user_error(path, cohort=None):
    try:
        s = load_splits(path, cohort)
    except UserError as exc:
        msg = str(exc)
        assert str(path) in msg and "\n" not in msg, msg
        return None
    assert isinstance(s.data_hash, str) and isinstance(s.seed, int) and 0 <= s.seed < 2**32
    assert set(SPLIT_NAMES) <= set(s.assignments) <= set(SPLIT_NAMES) | {UNSEEN}
    ids = [i for v in s.assignments.values() for i in v]
    assert all(isinstance(i, str) and i for i in ids) and len(ids) == len(set(ids))
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in s.fractions.values())
    if cohort is not None:
        assert s.data_hash == cohort
    return s


@FUZZ
@given(doc=json_values)
def test_arbitrary_json(scratch, doc):
    path = scratch / "any.json"
    path.write_text(json.dumps(doc))
    _load_or_user_error(path)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(list(_valid()) + ["extra"]), json_values, max_size=8))
def test_arbitrary_values_under_the_right_schema_string(scratch, doc):
    path = scratch / "schema.json"
    path.write_text(json.dumps({**doc, "schema": SCHEMA}))
    _load_or_user_error(path)


@st.composite
def mutated(draw):
    """A valid split file with one to three fields (top level, or inside splits / fractions /
    strata) replaced by any JSON value or deleted."""
    doc = _valid()
    tables = [doc, doc["splits"], doc["fractions"], doc["strata"]]  # kept even when doc drops them
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(tables))
        key = draw(st.sampled_from(sorted(where) + ["unseen_vendor_test", "x"]))
        if draw(st.booleans()) and key in where:
            del where[key]
        else:
            where[key] = draw(json_values)
    return doc


@FUZZ
@given(doc=mutated(), with_hash=st.booleans())
def test_mutated_split_files(scratch, doc, with_hash):
    path = scratch / "mutated.json"
    path.write_text(json.dumps(doc))
    _load_or_user_error(path, HASH if with_hash else None)


@pytest.mark.parametrize("change, field", [
    ({"splits": {"train": "s1", "holdout": [], "reference": [], "test": []}}, "splits/train"),
    ({"splits": {"train": [1], "holdout": [], "reference": [], "test": []}}, "splits/train/0"),
    ({"splits": {"train": [], "holdout": [], "reference": []}}, "splits"),
    ({"splits": {"train": [], "holdout": [], "reference": [], "test": [], "valid": []}}, "splits"),
    ({"data_hash": 5}, "data_hash"),
    ({"fractions": {"train": "0.4"}}, "fractions/train"),
    ({"fractions": {"train": 2}}, "fractions/train"),
    ({"seed": "3"}, "seed"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"kind": "other"}, "kind"),
    ({"strata": {"A/NOR": {"train": -1}}}, "strata/A/NOR/train"),
    ({"heldout_vendor": 3}, "heldout_vendor"),
    ({"colour": "red"}, "<top>"),
])
def test_structure_errors_name_the_file_and_field(tmp_path, change, field):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps({**_valid(), **change}))
    with pytest.raises(UserError, match=rf"splits\.json: invalid split file at '{field}': "):
        load_splits(path)


def test_missing_hash_non_finite_numbers_and_duplicates(tmp_path):
    path = tmp_path / "splits.json"
    doc = _valid()
    del doc["data_hash"]
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="'data_hash' is a required property"):
        load_splits(path)
    path.write_text(json.dumps({**_valid(), "fractions": {"train": float("nan")}}))  # json writes NaN
    with pytest.raises(UserError, match=r"splits\.json: not a readable split file \(NaN is not a JSON number\)"):
        load_splits(path)
    path.write_text(json.dumps({**_valid(), "splits": {"train": ["a", "a"], "holdout": [], "reference": [], "test": []}}))
    with pytest.raises(UserError, match="subject 'a' is twice in train"):
        load_splits(path)
    path.write_text("[" * 100_000)
    with pytest.raises(UserError, match="not a readable split file"):
        load_splits(path)

