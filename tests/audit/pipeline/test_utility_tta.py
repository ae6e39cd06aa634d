"""``audit.pipeline.utility_tta``: which scans are adapted, how, and when it is unavailable.

The whole stage with adaptation (fake SDEdit generator, held-out and external vendors):
tests/audit/utility/test_utility.py::test_run_utility_end_to_end."""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.errors import UserError
from audit.pipeline.utility_options import parse_tta_strengths
from audit.pipeline.utility_plan import SubjectPlan
from audit.pipeline.utility_tta import adapt_unseen, tta_vendor, unseen_vendors
from generators.data import SliceSet


class _Restyler:
    name = "fake"

    class vocab:  # noqa: N801
        vendors = ["A", "B", "D"]

    def __init__(self):
        self.calls = []

    def sdedit(self, reference, masks, *, strength, vendor, group, seed):
        self.calls.append({"n": len(reference), "masks": masks, "group": group, "vendor": list(vendor), "strength": strength})
        return np.clip(reference + strength, 0, 1)


def _slices(vendors):
    n = len(vendors)
    return SliceSet(np.full((n, 8, 8), 0.2, np.float32), np.ones((n, 8, 8), np.uint8), np.ones(n, bool),
                    np.array([f"s{i}" for i in range(n)]), np.array(vendors), np.array(["NOR"] * n),
                    np.array([1.5, 1.5], np.float32))


def _plan(held="D", external=False):
    evaluate = {"A": ["s0"], "B": ["s1"], "D": ["s2", "s3"]}
    plan = SubjectPlan(["A", "B", "D"], held, ["t0"], ["v0"], evaluate)
    if external:
        plan.add_external("/data/mnms", {"external@X": ["external:s4"]})
    return plan


def test_only_unseen_domains_are_restyled_without_labels_towards_seen_vendors():
    ev = _slices(["A", "B", "D", "D", "external@X"])
    gen = _Restyler()
    plan = _plan(external=True)
    assert unseen_vendors(plan) == ["D", "external@X"]
    out, targets = adapt_unseen(gen, ev, plan, (0.25, 0.5), seed=0, sampling={})
    assert targets == "A, B"
    assert sorted(set(out.vendor)) == sorted(tta_vendor(s, v) for s in (0.25, 0.5) for v in ("D", "external@X"))
    assert len(out) == 2 * 3
    assert all(c["masks"] is None and c["group"] is None for c in gen.calls)  # no label reaches the generator
    assert {v for c in gen.calls for v in c["vendor"]} <= {"A", "B"}  # never the held-out vendor
    np.testing.assert_allclose(out.images[out.vendor == tta_vendor(0.5, "D")], 0.7)
    np.testing.assert_array_equal(out.masks, 1)  # the ground truth stays for scoring only
    assert list(out.subject_ids[out.vendor == tta_vendor(0.25, "D")]) == ["s2", "s3"]


@pytest.mark.parametrize("generator, plan, strengths, reason", [
    (_Restyler(), _plan(), (), "switched off"),
    (None, _plan(), (0.5,), "external sample set has no SDEdit"),
    (object(), _plan(), (0.5,), "has no SDEdit sampler"),
    (_Restyler(), _plan(held=None), (0.5,), "no unseen domain"),
])
def test_unavailable_with_the_reason(generator, plan, strengths, reason):
    out, why = adapt_unseen(generator, _slices(["A", "B", "D", "D"]), plan, strengths, seed=0, sampling={})
    assert out is None and reason in why


def test_strengths_are_parsed_and_checked():
    assert parse_tta_strengths("0.5, 0.25,0.5") == (0.25, 0.5)
    assert parse_tta_strengths("") == ()
    for bad, needle in (("0", "(0, 1]"), ("1.5", "(0, 1]"), ("nan", "(0, 1]"), ("x", "not a number")):
        with pytest.raises(UserError, match="audit.utility_tta_strengths") as err:
            parse_tta_strengths(bad)
        assert needle in str(err.value)
