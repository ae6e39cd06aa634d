"""Canary plans for one-run DP auditing: drawn from the seed alone, before training; the coin
decides training, canaries never count as members; bad requests are one line before training."""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.errors import UserError
from audit.privacy.canaries import MIN_CANARIES, CanaryPlan, check_request, plan_canaries


def _ids(n=200, per=10):
    return np.array([f"s{i // per:03d}" for i in range(n)])


def test_plan_is_a_function_of_the_seed_and_splits_the_train_slices_honestly(tmp_path):
    ids = _ids()
    a, b = plan_canaries(ids, 40, seed=3), plan_canaries(ids, 40, seed=3)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.included, b.included)
    assert not np.array_equal(a.indices, plan_canaries(ids, 40, seed=4).indices)
    assert a.k == 40 and len(set(a.indices.tolist())) == 40
    assert 10 <= a.included.sum() <= 30  # a fair coin per canary
    train, members = set(a.training_indices().tolist()), set(a.member_indices().tolist())
    assert train == set(range(200)) - set(a.indices[~a.included].tolist())  # left-out canaries are not trained on
    assert members == set(range(200)) - set(a.indices.tolist())  # no canary is a member for MIA
    assert list(a.subject_ids) == list(ids[a.indices])
    # the saved plan reads back identically, and only for the same training slices
    a.save(tmp_path / "canaries.json")
    back = CanaryPlan.load(tmp_path / "canaries.json", 200)
    assert np.array_equal(back.indices, a.indices) and np.array_equal(back.included, a.included)
    with pytest.raises(UserError, match="does not match"):
        CanaryPlan.load(tmp_path / "canaries.json", 199)


def test_bad_requests_are_refused_with_one_line():
    check_request(0, dp_enabled=False)  # off: nothing to check
    with pytest.raises(UserError, match="--dp-epsilon or --dp-noise-multiplier"):
        check_request(20, dp_enabled=False)
    with pytest.raises(UserError, match=f">= {MIN_CANARIES}"):
        check_request(MIN_CANARIES - 1, dp_enabled=True)
    with pytest.raises(UserError, match="whole cine stacks"):
        check_request(20, dp_enabled=True, generator_data="subjects")
    with pytest.raises(UserError, match="at most 100 can be canaries"):
        plan_canaries(_ids(), 101, seed=0)


@pytest.mark.parametrize("flags, message", [
    (["--dp-audit-canaries", "20"], "give --dp-epsilon or --dp-noise-multiplier too"),
    (["--dp-epsilon", "8", "--dp-audit-canaries", "5"], "must be >= 10"),
    (["--dp-epsilon", "8", "--dp-audit-canaries", "-3"], "dp.audit_canaries must be >= 0"),
])
def test_cli_refuses_bad_canary_requests_before_any_stage(tmp_path, capsys, flags, message):
    from audit.cli.main import main

    out = tmp_path / "run"
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (out / "state.json").exists() or '"cohort"' not in (out / "state.json").read_text()
