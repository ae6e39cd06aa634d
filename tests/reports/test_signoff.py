"""``reports.policy`` and ``reports.signoff``: policy validation, verdicts, files written."""

from __future__ import annotations

import copy
import hashlib
import html
import json
import re
from pathlib import Path

import pytest

from audit.core.errors import UserError
from audit.core.results import metric, unavailable
from reports.policy import default_policy_path, load_policy, parse_policy
from reports.signoff import (EXIT_CODES, FAIL, INCOMPLETE, NA, PASS, WARN, evaluate_policy, overall_verdict,
                             sign_off)


import cmr_audit_test_signoff_fixtures as fx  # noqa: E402  (registered by conftest.py)
DEFAULT = load_policy()


def verdicts(doc, policy=DEFAULT):
    overall, criteria = evaluate_policy(policy, doc)
    return overall, {c["id"]: c for c in criteria}


# --------------------------------------------------------------------------- the shipped policy


def test_shipped_default_policy_loads_with_the_issue_thresholds():
    p = load_policy()
    assert p.version == 1 and p.shipped and p.path == str(default_policy_path())
    assert p.sha256 == hashlib.sha256(default_policy_path().read_bytes()).hexdigest()
    by_id = {c.id: c for c in p.criteria}
    assert set(by_id) == {"mia_auc", "mia_tpr_at_low_fpr", "copy_rate", "dp_epsilon_lower_bound", "dp_one_run_bound",
                          "dp_no_mixed_phases", "plausible_rate", "judge_dice_vs_ceiling", "fid_vs_real_floor",
                          "utility_vs_real", "utility_hd95_vs_real"}
    one_run = by_id["dp_one_run_bound"]  # the canaries' bound may not exceed the claim; N/A without them
    assert (one_run.metric[-1], one_run.reference[-1], one_run.threshold) == ("one_run_epsilon_lb", "claimed_epsilon", 1.0)
    assert (by_id["mia_auc"].op, by_id["mia_auc"].threshold, by_id["mia_auc"].warn_threshold) == ("<=", 0.60, 0.65)
    low = by_id["mia_tpr_at_low_fpr"]  # TPR <= 10x the FPR it is read at: 1 % at 0.1 % FPR, as before
    assert (low.threshold, low.reference_param, low.metric[-1]) == (10.0, "fpr", "tpr_at_fpr_0.1%")
    assert [f[-1] for f in low.fallback] == ["tpr_at_lowest_fpr"]
    assert by_id["copy_rate"].threshold == 0.01
    assert by_id["plausible_rate"].op == ">=" and by_id["plausible_rate"].threshold == 0.90
    assert by_id["judge_dice_vs_ceiling"].threshold == 0.90 and by_id["judge_dice_vs_ceiling"].reference
    assert by_id["fid_vs_real_floor"].threshold == 3.0 and by_id["fid_vs_real_floor"].reference
    assert by_id["utility_vs_real"].metric == ("utility", "vs_real", "real+synthetic", "*", "dice_diff")
    hd = by_id["utility_hd95_vs_real"]  # one pixel at 1.5 mm, read on the CI's unfavourable bound
    assert (hd.metric[-2:], hd.op, hd.threshold, hd.use_ci) == (("hd95_diff_mm", "mean"), "<=", 1.5, True)
    for c in p.criteria:
        assert c.rationale and "\n" not in c.rationale


# --------------------------------------------------------------------------- verdicts


def test_good_run_passes():
    overall, cs = verdicts(fx.good_doc())
    assert overall == PASS, {k: (c["verdict"], c["reason"]) for k, c in cs.items()}
    assert cs["dp_epsilon_lower_bound"]["verdict"] == NA and cs["dp_no_mixed_phases"]["verdict"] == NA  # no DP claim
    assert all(c["verdict"] == PASS for k, c in cs.items() if not k.startswith("dp_"))
    # the white-box attack the generator cannot support is a skipped branch, listed
    assert [s["path_display"] for s in cs["mia_auc"]["skipped"]] == ["privacy.attacks.loss_threshold"]
    assert len(cs["utility_vs_real"]["matches"]) == len(fx.VENDORS)


def test_leaky_run_fails():
    overall, cs = verdicts(fx.leaky_doc())
    assert overall == FAIL
    assert cs["mia_auc"]["verdict"] == FAIL and cs["mia_auc"]["observed"]["value"] == 0.99
    assert "privacy.attacks.domias.image.auc" in cs["mia_auc"]["reason"]
    assert cs["copy_rate"]["verdict"] == FAIL and cs["copy_rate"]["observed"]["value"] == 0.9


def test_clean_run_without_utility_is_incomplete_not_pass():
    overall, cs = verdicts(fx.without_utility(fx.good_doc()))
    assert overall == INCOMPLETE
    assert cs["utility_vs_real"]["verdict"] == INCOMPLETE
    assert "the utility audit is not available yet" in cs["utility_vs_real"]["reason"]
    doc = fx.good_doc()
    doc["utility"] = {}
    assert verdicts(doc)[0] == INCOMPLETE


def test_one_vendor_unavailable_is_incomplete_and_one_vendor_worse_fails():
    doc = fx.good_doc()
    doc["utility"]["vs_real"]["real+synthetic"]["D"]["dice_diff"] = unavailable("no test subject of vendor D")
    overall, cs = verdicts(doc)
    assert overall == INCOMPLETE and "vendor D" in cs["utility_vs_real"]["reason"]
    doc["utility"]["vs_real"]["real+synthetic"]["B"]["dice_diff"] = fx.m(-0.05, (-0.07, -0.03))
    overall, cs = verdicts(doc)  # a measured failure is definite even with vendor D unknown
    assert overall == FAIL and cs["utility_vs_real"]["observed"]["path"][-2] == "B"


def test_a_setting_that_worsens_hd95_is_a_finding_even_when_dice_holds():
    doc = fx.good_doc()
    doc["utility"]["vs_real"]["real+synthetic"]["C"]["hd95_diff_mm"]["mean"] = fx.m(3.2, (1.9, 4.6), unit="mm")
    overall, cs = verdicts(doc)
    assert cs["utility_vs_real"]["verdict"] == PASS  # Dice is unchanged
    assert overall == FAIL and cs["utility_hd95_vs_real"]["verdict"] == FAIL
    assert cs["utility_hd95_vs_real"]["observed"]["path"][-3] == "C"
    doc["utility"]["vs_real"]["real+synthetic"]["C"]["hd95_diff_mm"]["mean"] = fx.m(0.8, (-0.6, 2.2), unit="mm")
    assert verdicts(doc)[1]["utility_hd95_vs_real"]["verdict"] == WARN  # the point holds, the CI does not


def test_warn_band():
    doc = fx.good_doc()
    doc["privacy"]["attacks"]["domias"]["image"]["auc"] = fx.m(0.62, (0.61, 0.63))
    overall, cs = verdicts(doc)
    assert cs["mia_auc"]["verdict"] == WARN and "warn band" in cs["mia_auc"]["reason"]
    assert overall == WARN and EXIT_CODES[overall] == 1
    doc["privacy"]["attacks"]["domias"]["image"]["auc"] = fx.m(0.66, (0.65, 0.67))
    assert verdicts(doc)[1]["mia_auc"]["verdict"] == FAIL
    doc["privacy"]["attacks"]["domias"]["image"]["auc"] = fx.m(0.65, (0.64, 0.65))  # the limit is inclusive
    assert verdicts(doc)[1]["mia_auc"]["verdict"] == WARN


def test_ci_bound_crossing_the_threshold_warns():
    doc = fx.good_doc()
    doc["privacy"]["attacks"]["monte_carlo"]["image"]["auc"] = fx.m(0.55, (0.40, 0.70))
    overall, cs = verdicts(doc)
    assert overall == WARN
    assert cs["mia_auc"]["verdict"] == WARN and "CI upper bound 0.7" in cs["mia_auc"]["reason"]
    # a ">=" criterion looks at the lower bound
    doc = fx.good_doc()
    doc["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = fx.m(0.95, (0.85, 0.99))
    overall, cs = verdicts(doc)
    assert cs["plausible_rate"]["verdict"] == WARN and "CI lower bound 0.85" in cs["plausible_rate"]["reason"]
    # no CI recorded: point estimate only, said so
    doc["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = fx.m(0.95)
    cs = verdicts(doc)[1]
    assert cs["plausible_rate"]["verdict"] == PASS and "no CI" in cs["plausible_rate"]["reason"]


def test_ratio_criteria_use_the_reference():
    doc = fx.good_doc()
    doc["fidelity"]["judge"]["synthetic_vs_test"]["fid"] = fx.m(16.0, (15.0, 17.0), unit="feature units^2")
    cs = verdicts(doc)[1]
    c = cs["fid_vs_real_floor"]
    assert c["verdict"] == FAIL and c["effective_threshold"] == pytest.approx(15.0)
    assert c["observed"]["ratio"] == pytest.approx(3.2) and "16 / 5 = ratio 3.2" in c["reason"]
    # judge Dice 0.80 vs ceiling 0.91: 0.879 < 0.90
    doc = fx.good_doc()
    doc["anatomy"]["judge_agreement"]["dice"]["mean"] = fx.m(0.80, (0.78, 0.82))
    assert verdicts(doc)[1]["judge_dice_vs_ceiling"]["verdict"] == FAIL
    # the reference missing or zero: no evidence
    doc = fx.good_doc()
    doc["fidelity"]["judge"]["real_floor"]["fid"] = unavailable("too few real subjects")
    c = verdicts(doc)[1]["fid_vs_real_floor"]
    assert c["verdict"] == INCOMPLETE and "too few real subjects" in c["reason"]
    doc["fidelity"]["judge"]["real_floor"]["fid"] = fx.m(0.0)
    assert verdicts(doc)[1]["fid_vs_real_floor"]["verdict"] == INCOMPLETE


@pytest.mark.parametrize("where", [
    ("anatomy", "plausibility", "synthetic", "plausible_rate"),
    ("fidelity", "judge", "synthetic_vs_test", "fid"),
    ("privacy", "memorisation", "pca", "copy_rate"),
])
def test_unavailable_or_absent_figure_is_incomplete_never_pass(where):
    doc = fx.good_doc()
    node = doc
    for k in where[:-1]:
        node = node[k]
    node[where[-1]] = unavailable("could not be computed: <reason>")
    overall, cs = verdicts(doc)
    assert overall == INCOMPLETE
    bad = [c for c in cs.values() if c["verdict"] == INCOMPLETE]
    assert len(bad) == 1 and "could not be computed" in bad[0]["reason"]
    del node[where[-1]]
    overall, cs = verdicts(doc)
    assert overall == INCOMPLETE
    assert any("not in results.json" in c["reason"] for c in cs.values() if c["verdict"] == INCOMPLETE)


def test_low_fpr_tpr_unavailable_is_incomplete_but_a_failing_auc_still_fails():
    doc = fx.good_doc()
    for a in ("domias", "monte_carlo"):
        doc["privacy"]["attacks"][a]["image"]["tpr_at_fpr_0.1%"] = unavailable("only 16 non-member images")
        doc["privacy"]["attacks"][a]["image"]["tpr_at_lowest_fpr"] = unavailable("only 9 non-member images")
    overall, cs = verdicts(doc)
    assert overall == INCOMPLETE and cs["mia_tpr_at_low_fpr"]["verdict"] == INCOMPLETE
    assert "(and 1 more)" in cs["mia_tpr_at_low_fpr"]["reason"]
    doc["privacy"]["attacks"]["domias"]["image"]["auc"] = fx.m(0.99, (0.98, 1.0))
    assert verdicts(doc)[0] == FAIL  # FAIL outranks INCOMPLETE


def test_all_attacks_unavailable_is_incomplete():
    doc = fx.good_doc()
    doc["privacy"]["attacks"] = {"domias": unavailable("failed"), "monte_carlo": unavailable("failed")}
    c = verdicts(doc)[1]["mia_auc"]
    assert c["verdict"] == INCOMPLETE and "no figure" in c["reason"] and len(c["skipped"]) == 2


def test_dp_criterion():
    doc = fx.good_doc()
    dpv = doc["privacy"]["dp_verification"]
    dpv["claimed_epsilon"] = fx.m(8.0)
    dpv["epsilon_lb"] = fx.m(2.0)
    assert verdicts(doc)[1]["dp_epsilon_lower_bound"]["verdict"] == PASS
    dpv["epsilon_lb"] = fx.m(9.0)
    overall, cs = verdicts(doc)
    assert overall == FAIL and cs["dp_epsilon_lower_bound"]["verdict"] == FAIL
    dpv["epsilon_lb"] = unavailable("no attack produced scores")
    assert verdicts(doc)[1]["dp_epsilon_lower_bound"]["verdict"] == INCOMPLETE
    del doc["privacy"]["dp_verification"]  # cannot tell whether DP was claimed: not N/A
    assert verdicts(doc)[1]["dp_epsilon_lower_bound"]["verdict"] == INCOMPLETE


def test_dp_run_with_a_non_private_phase_fails():
    doc = fx.good_doc()
    doc["privacy"]["dp_verification"]["claimed_epsilon"] = fx.m(8.0)
    doc["privacy"]["dp_verification"]["epsilon_lb"] = fx.m(1.0)
    assert verdicts(doc)[1]["dp_no_mixed_phases"]["verdict"] == INCOMPLETE  # a DP claim without its ledger
    doc["dp"] = {"mixed_phases": fx.m(0.0)}
    assert verdicts(doc)[1]["dp_no_mixed_phases"]["verdict"] == PASS
    doc["dp"] = {"mixed_phases": fx.m(1.0)}
    overall, cs = verdicts(doc)
    assert overall == FAIL and cs["dp_no_mixed_phases"]["verdict"] == FAIL


POLICY_HEAD = 'policy_version = 1\nname = "t"\n'


def crit(**kw) -> str:
    base = {"id": '"c1"', "title": '"t"', "metric": '["anatomy", "plausibility", "synthetic", "plausible_rate"]',
            "op": '">="', "threshold": "0.9", "rationale": '"r"'}
    base.update(kw)
    return "[[criterion]]\n" + "".join(f"{k} = {v}\n" for k, v in base.items() if v is not None)


def policy_from(text: str, tmp_path: Path, name: str = "p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_policy(path)


def test_advisory_criterion_counts_as_warn_and_all_na_is_incomplete(tmp_path):
    p = policy_from(POLICY_HEAD + crit(severity='"advisory"'), tmp_path)
    doc = fx.good_doc()
    doc["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = fx.m(0.5, (0.4, 0.6))
    overall, cs = verdicts(doc, p)
    assert cs["c1"]["verdict"] == FAIL and cs["c1"]["contributes"] == WARN and overall == WARN
    p = policy_from(POLICY_HEAD + crit(missing='"not_applicable"'), tmp_path)
    doc["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = unavailable("no masks")
    overall, cs = verdicts(doc, p)
    assert cs["c1"]["verdict"] == NA and overall == INCOMPLETE  # nothing evaluated is not a PASS


def test_verdict_order():
    def c(v):
        return {"contributes": v}
    assert overall_verdict([c(PASS), c(WARN)]) == WARN
    assert overall_verdict([c(WARN), c(INCOMPLETE)]) == INCOMPLETE
    assert overall_verdict([c(INCOMPLETE), c(FAIL), c(PASS)]) == FAIL
    assert overall_verdict([c(PASS), c(NA)]) == PASS
    assert overall_verdict([c(NA)]) == INCOMPLETE
    assert EXIT_CODES == {PASS: 0, WARN: 1, INCOMPLETE: 2, FAIL: 2}


# --------------------------------------------------------------------------- policy validation


@pytest.mark.parametrize("text, needle", [
    (POLICY_HEAD + "colour = 1\n" + crit(), "unknown key 'colour'"),
    (POLICY_HEAD + crit(colour='"red"'), "unknown key 'colour'"),
    (POLICY_HEAD + crit(threshold='"0.9"'), "key 'threshold' must be a number"),
    (POLICY_HEAD + crit(threshold="true"), "key 'threshold' must be a number"),
    (POLICY_HEAD + crit(use_ci='"yes"'), "key 'use_ci' must be a boolean"),
    (POLICY_HEAD + crit(op='"=<"'), "key 'op' '=<' is not a comparison"),
    (POLICY_HEAD + crit(metric='"anatomy.plausibility.synthetic.plausible_rate"'), "key 'metric' must be an array"),
    (POLICY_HEAD + crit(metric='["anatomy", "plausible rate!"]'), "path item 'plausible rate!'"),
    (POLICY_HEAD + crit(metric='["results", "x"]'), "starts with a results section"),
    (POLICY_HEAD + crit(metric='["anatomy"]'), "names a whole section"),
    (POLICY_HEAD + crit(metric='["anatomy", 3]'), "path items must be strings"),
    (POLICY_HEAD + crit(reference='["anatomy", "*", "x"]'), "wildcard '*' is only allowed in 'metric'"),
    (POLICY_HEAD + crit(warn_threshold="0.95"), "key 'warn_threshold' (0.95) must be at most"),
    (POLICY_HEAD + crit(missing='"skip"'), "key 'missing' 'skip'"),
    (POLICY_HEAD + crit(severity='"fatal"'), "key 'severity' 'fatal'"),
    (POLICY_HEAD + crit(skip_unavailable_branches="true"), "needs a '*'"),
    (POLICY_HEAD + crit(rationale=None), "missing required key 'rationale'"),
    (POLICY_HEAD + crit() + crit(), "criterion id 'c1' appears twice"),
    (POLICY_HEAD + crit(id='"bad id"'), "key 'id' 'bad id'"),
    ('policy_version = 2\nname = "t"\n' + crit(), "policy_version 2 is not supported"),
    ('policy_version = "1"\nname = "t"\n' + crit(), "key 'policy_version' must be an integer"),
    ('name = "t"\n' + crit(), "missing required key 'policy_version'"),
    (POLICY_HEAD + "criterion = []\n", "no [[criterion]] tables"),
    (POLICY_HEAD + "[[criterion]\n", "not valid TOML"),
])
def test_policy_errors_are_one_line_naming_file_and_key(text, needle, tmp_path):
    with pytest.raises(UserError) as exc:
        policy_from(text, tmp_path, "my-policy.toml")
    msg = str(exc.value)
    assert needle in msg and "my-policy.toml" in msg and "\n" not in msg, msg


def test_missing_policy_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_policy(tmp_path / "nope.toml")


def test_parse_policy_accepts_the_default_as_data():
    import tomllib

    p = parse_policy(tomllib.loads(default_policy_path().read_text()), source="x")
    assert len(p.criteria) == len(DEFAULT.criteria)


# --------------------------------------------------------------------------- files


def test_signoff_files_hashes_and_fields(tmp_path):
    run = fx.write_run(tmp_path / "run", fx.good_doc())
    res = sign_off(run)
    assert res.verdict == PASS and res.exit_code == 0
    s = json.loads((run / "signoff.json").read_text())
    assert s == json.loads(json.dumps(res.signoff))
    assert s["schema"] == "cmr-audit/signoff/v1" and s["verdict"] == PASS
    for name in ("results.json", "samples.npz"):
        assert s["covers"][name]["sha256"] == hashlib.sha256((run / name).read_bytes()).hexdigest()
    assert s["policy"]["sha256"] == hashlib.sha256(default_policy_path().read_bytes()).hexdigest()
    assert s["policy"]["path"] == str(default_policy_path()) and s["policy"]["policy_version"] == 1
    assert s["cmr_audit_version"] and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["created_utc"])
    assert (s["reviewer"], s["reviewed_utc"], s["decision_notes"]) == ("", "", "")
    assert s["run"]["generator"] == "ldm" and s["run"]["config_sha256"] == "ab" * 32
    for c in s["criteria"]:
        assert {"id", "verdict", "observed", "threshold", "op", "rationale", "reason"} <= set(c)
    page = (run / "signoff.html").read_text()
    assert "PASS" in page and "mia_auc" in page and s["covers"]["samples.npz"]["sha256"] in page


def test_custom_policy_is_recorded(tmp_path):
    run = fx.write_run(tmp_path / "run", fx.good_doc())
    policy = tmp_path / "strict.toml"
    policy.write_text(POLICY_HEAD + crit(threshold="0.99"))
    res = sign_off(run, policy)
    assert res.verdict == FAIL
    s = res.signoff
    assert s["policy"]["path"] == str(policy) and not s["policy"]["shipped_default"]
    assert s["policy"]["sha256"] == hashlib.sha256(policy.read_bytes()).hexdigest()


def test_html_escapes_every_string(tmp_path):
    evil = "<script>alert(1)</script>"
    doc = fx.good_doc(run_id=evil, generator=evil)
    doc["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = unavailable(f"subject {evil} has no mask")
    doc["fidelity"]["judge"]["synthetic_vs_test"]["fid"] = metric(8.0, "feature units^2", method=evil, notes=evil)
    run = fx.write_run(tmp_path / "run", doc)
    res = sign_off(run)
    assert res.verdict == INCOMPLETE
    page = (run / "signoff.html").read_text()
    assert "<script" not in page.lower()
    assert html.escape(evil) in page
    # self-contained: no external requests, nothing to execute
    assert not re.search(r"(src|href)\s*=", page, re.I) and "@import" not in page and "url(" not in page
    assert_balanced(page)


def assert_balanced(page: str) -> None:
    from html.parser import HTMLParser

    class Parser(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.errors = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "br"):
                self.stack.append(tag)

        def handle_endtag(self, tag):
            if self.stack and self.stack[-1] == tag:
                self.stack.pop()
            else:
                self.errors.append((tag, self.getpos()))

    p = Parser()
    p.feed(page)
    assert not p.errors and not p.stack, (p.errors, p.stack)


def test_bad_input_writes_nothing(tmp_path):
    # no such directory
    with pytest.raises(UserError, match="no such run directory"):
        sign_off(tmp_path / "missing")
    # results.json missing: say which file
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.npz").write_bytes(b"x")
    with pytest.raises(UserError, match="results.json is missing"):
        sign_off(run)
    # samples.npz missing
    run2 = fx.write_run(tmp_path / "run2", fx.good_doc(), samples=False)
    with pytest.raises(UserError, match="samples.npz is missing"):
        sign_off(run2)
    # another schema version: load/validate's message
    run3 = fx.write_run(tmp_path / "run3", fx.good_doc())
    doc = json.loads((run3 / "results.json").read_text())
    doc["schema"] = "cmr-audit/results/v2"
    (run3 / "results.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"schema version 'cmr-audit/results/v2' is not supported"):
        sign_off(run3)
    # a corrupt results file
    (run3 / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read results"):
        sign_off(run3)
    # a bad policy on a good run: nothing written, an earlier sign-off left as it was
    run4 = fx.write_run(tmp_path / "run4", fx.good_doc())
    (run4 / "signoff.json").write_text("earlier")
    bad = tmp_path / "bad.toml"
    bad.write_text(POLICY_HEAD + crit(threshold='"high"'))
    with pytest.raises(UserError, match="threshold"):
        sign_off(run4, bad)
    assert (run4 / "signoff.json").read_text() == "earlier" and not (run4 / "signoff.html").exists()
    for d in (run, run2, run3):
        assert not (d / "signoff.json").exists() and not (d / "signoff.html").exists()
    assert not [p for p in tmp_path.rglob(".signoff*")]  # no temporary files left


def test_keys_with_dots_are_navigated_not_split():
    doc = fx.good_doc()
    doc["privacy"]["attacks"]["domias"]["image"]["tpr_at_fpr_0.1%"] = fx.tpr(0.2, (0.1, 0.3), 0.001)
    c = verdicts(doc)[1]["mia_tpr_at_low_fpr"]
    assert c["verdict"] == FAIL
    assert c["observed"]["path"] == ["privacy", "attacks", "domias", "image", "tpr_at_fpr_0.1%"]
    assert c["observed"]["path_display"] == 'privacy.attacks.domias.image["tpr_at_fpr_0.1%"]'


def test_evaluation_does_not_modify_the_results():
    doc = fx.good_doc()
    before = copy.deepcopy(doc)
    verdicts(doc)
    assert doc == before


def test_ci_policy_checks_integrity_not_quality(tmp_path):
    ci = load_policy("ci")
    assert ci.shipped and ci.path.endswith("ci.toml") and "CI" in ci.name
    doc = fx.good_doc()
    doc["fidelity"]["judge"]["fid_ratio_to_floor"] = fx.m(40.0)  # a smoke model: awful, but CI passes it
    doc["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = fx.m(0.1)
    assert verdicts(doc, ci)[0] == PASS
    assert verdicts(doc)[0] == FAIL  # the release policy does not
    for space in doc["privacy"]["memorisation"]:
        doc["privacy"]["memorisation"][space]["copy_rate"] = fx.m(0.9)  # replaying training images: a bug
    overall, cs = verdicts(doc, ci)
    assert overall == FAIL and cs["copy_rate"]["verdict"] == FAIL
    del doc["anatomy"]["judge_agreement"]  # an audit that stopped producing its figure
    assert verdicts(doc, ci)[1]["anatomy_figures"]["verdict"] == INCOMPLETE
    # a file named like a shipped policy wins over the name
    (tmp_path / "ci").write_text((default_policy_path()).read_text())
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert not load_policy("ci").shipped
    finally:
        os.chdir(cwd)


# --------------------------------------------------------------------------- strictest low-FPR point (issue 26)

LOW = "mia_tpr_at_low_fpr"


def _no_01(doc, attacks=("domias", "monte_carlo")):
    for a in attacks:
        doc["privacy"]["attacks"][a]["image"]["tpr_at_fpr_0.1%"] = unavailable(
            "only 304 non-member images: a FPR of 0.001 needs at least 1000")
    return doc


def test_low_fpr_reads_0_1_percent_when_available():
    c = verdicts(fx.good_doc())[1][LOW]
    assert c["verdict"] == PASS and c["observed"]["path"][-1] == "tpr_at_fpr_0.1%"
    assert "fallback_for" not in c["observed"] and c["observed"]["compared"] == pytest.approx(0.002 / 0.001)
    assert "0.002 / fpr 0.001 = ratio 2 <= 10" in c["reason"]


def test_low_fpr_falls_back_to_the_lowest_supported_fpr_and_says_so():
    doc = _no_01(fx.good_doc())
    c = verdicts(doc)[1][LOW]
    assert c["verdict"] == PASS  # 0.05 at FPR 10/152 = 0.76x the FPR (CI upper 0.08 -> 1.2x)
    obs = c["observed"]
    assert obs["path"][-1] == "tpr_at_lowest_fpr" and obs["params"] == {"fpr": pytest.approx(10 / 152)}
    assert obs["fallback_for"].endswith('["tpr_at_fpr_0.1%"]') and "needs at least 1000" in obs["fallback_reason"]
    assert "tpr_at_lowest_fpr" in c["reason"] and "read instead of" in c["reason"] and "ratio 0.76 <= 10" in c["reason"]
    assert all(m["path"][-1] == "tpr_at_lowest_fpr" for m in c["matches"])
    # a leak at the lowest FPR: TPR 0.9 at FPR 0.066 is 13.7x the FPR
    doc["privacy"]["attacks"]["monte_carlo"]["image"]["tpr_at_lowest_fpr"] = fx.tpr(0.9, (0.8, 0.95), 10 / 152)
    overall, cs = verdicts(doc)
    assert overall == FAIL and cs[LOW]["verdict"] == FAIL
    assert cs[LOW]["reason"].startswith("privacy.attacks.monte_carlo.image.tpr_at_lowest_fpr: (read instead of")
    # the threshold scales with the FPR: 0.5 at FPR 0.066 is 7.6x (PASS on the point), CI upper 0.7 is 10.6x -> WARN
    doc["privacy"]["attacks"]["monte_carlo"]["image"]["tpr_at_lowest_fpr"] = fx.tpr(0.5, (0.3, 0.7), 10 / 152)
    assert verdicts(doc)[1][LOW]["verdict"] == WARN


def test_low_fpr_fallback_is_per_attack():
    doc = _no_01(fx.good_doc(), attacks=("monte_carlo",))
    doc["privacy"]["attacks"]["domias"]["image"]["tpr_at_fpr_0.1%"] = fx.tpr(0.02, (0.01, 0.03), 0.001)  # 20x
    c = verdicts(doc)[1][LOW]
    read = {m["path"][2]: m["path"][-1] for m in c["matches"]}
    assert read == {"domias": "tpr_at_fpr_0.1%", "monte_carlo": "tpr_at_lowest_fpr"}
    assert c["verdict"] == FAIL and c["reason"].startswith('privacy.attacks.domias.image["tpr_at_fpr_0.1%"]')
    assert [s["path"][2] for s in c["skipped"]] == ["loss_threshold"]  # an unavailable branch stays skipped


def test_low_fpr_without_a_recorded_fpr_or_any_figure_is_incomplete():
    doc = _no_01(fx.good_doc())
    doc["privacy"]["attacks"]["domias"]["image"]["tpr_at_lowest_fpr"] = fx.m(0.05, (0.02, 0.08))  # no params
    c = verdicts(doc)[1][LOW]
    assert c["verdict"] == INCOMPLETE and "no positive params.fpr" in c["reason"] and "re-run" in c["reason"]
    del doc["privacy"]["attacks"]["domias"]["image"]["tpr_at_lowest_fpr"]
    c = verdicts(doc)[1][LOW]
    assert c["verdict"] == INCOMPLETE and "needs at least 1000" in c["reason"]
    assert "fallback privacy.attacks.domias.image.tpr_at_lowest_fpr: " in c["reason"] and "not in results.json" in c["reason"]


def test_fallback_and_reference_param_in_a_site_policy(tmp_path):
    p = policy_from(POLICY_HEAD + crit(
        metric='["privacy", "attacks", "*", "image", "tpr_at_fpr_0.1%"]',
        fallback='[["privacy", "attacks", "*", "image", "tpr_at_fpr_1%"], ["privacy", "attacks", "*", "image", "tpr_at_lowest_fpr"]]',
        reference_param='"fpr"', op='"<="', threshold="5.0", skip_unavailable_branches="true"), tmp_path)
    (c,) = p.criteria
    assert c.fallback[0][-1] == "tpr_at_fpr_1%" and c.to_dict()["reference_param"] == "fpr"
    doc = _no_01(fx.good_doc())
    overall, cs = verdicts(doc, p)
    assert cs["c1"]["observed"]["path"][-1] == "tpr_at_fpr_1%"  # the first fallback that exists is read
    assert cs["c1"]["verdict"] == PASS  # 0.012 / 0.01 = 1.2 <= 5 (CI upper 2 <= 5)
    for a in ("domias", "monte_carlo"):
        del doc["privacy"]["attacks"][a]["image"]["tpr_at_fpr_1%"]
    assert verdicts(doc, p)[1]["c1"]["observed"]["path"][-1] == "tpr_at_lowest_fpr"


@pytest.mark.parametrize("kw, match", [
    ({"fallback": '[["privacy", "attacks", "domias", "image", "x"]]',
      "metric": '["privacy", "attacks", "*", "image", "auc"]'}, "same positions as in 'metric'"),
    ({"fallback": "[]"}, "'fallback' is empty"),
    ({"fallback": '["privacy", "x"]'}, "item 0 must be an array of keys"),
    ({"fallback": '[["anatomy", "plausibility", "synthetic", "plausible_rate"]]'}, "already tried"),
    ({"fallback": '[["nowhere", "x"]]'}, "starts with a results section"),
    ({"reference_param": '"f p r"'}, "must be a parameter name"),
    ({"reference_param": "3"}, "'reference_param' must be a string"),
    ({"reference_param": '"fpr"', "reference": '["anatomy", "x", "y"]'}, "exclude each other"),
])
def test_fallback_and_reference_param_are_validated(tmp_path, kw, match):
    with pytest.raises(UserError, match=match) as err:
        policy_from(POLICY_HEAD + crit(**kw), tmp_path)
    assert "\n" not in str(err.value) and "p.toml" in str(err.value)


def test_sign_off_html_names_the_fallback_read(tmp_path):
    run = fx.write_run(tmp_path / "run", _no_01(fx.good_doc()))
    res = sign_off(run)
    c = {x["id"]: x for x in res.signoff["criteria"]}[LOW]
    assert c["fallback"] == ["privacy.attacks.*.image.tpr_at_lowest_fpr"] and c["reference_param"] == "fpr"
    text = html.unescape((run / "signoff.html").read_text())
    assert "instead of" in text and "tpr_at_lowest_fpr" in text and "fallback 1" in text


def test_low_fpr_point_that_cannot_fail_is_a_warning_not_a_pass():
    # 16 non-member images: FPR_min = 10/16 = 0.625 and 10 x 0.625 > 1, so no TPR could exceed the limit
    doc = _no_01(fx.good_doc())
    for a in ("domias", "monte_carlo"):
        doc["privacy"]["attacks"][a]["image"]["tpr_at_lowest_fpr"] = fx.tpr(0.5, (0.3, 0.7), 10 / 16)
    c = verdicts(doc)[1][LOW]
    assert c["verdict"] == WARN and "cannot show a leak" in c["reason"] and "10 x 0.625 >= 1" in c["reason"]
    # at 0.1 % or at 10/152 the same rule can fail, so a pass is a pass
    assert verdicts(_no_01(fx.good_doc()))[1][LOW]["verdict"] == PASS


def test_one_run_bound_that_could_not_have_failed_is_a_warning_not_a_pass():
    doc = fx.good_doc()
    dpv = doc["privacy"]["dp_verification"]
    dpv["claimed_epsilon"] = fx.m(8.0)
    # ceiling 1.79 < claim 8: whatever the canaries showed, the bound could not exceed the claim
    dpv["one_run_epsilon_lb"] = metric(0.4, "1", method="canary game", params={"ceiling": 1.79, "claim_above_ceiling": 1.0})
    c = verdicts(doc)[1]["dp_one_run_bound"]
    assert c["verdict"] == WARN and "claim_above_ceiling = 1" in c["reason"] and "no evidence" in c["reason"]
    dpv["claimed_epsilon"] = fx.m(1.0)  # a claim the game can reach: a pass is a pass, a breach a FAIL
    dpv["one_run_epsilon_lb"] = metric(0.4, "1", method="canary game", params={"ceiling": 1.79, "claim_above_ceiling": 0.0})
    assert verdicts(doc)[1]["dp_one_run_bound"]["verdict"] == PASS
    dpv["one_run_epsilon_lb"] = metric(1.5, "1", method="canary game", params={"ceiling": 1.79, "claim_above_ceiling": 0.0})
    assert verdicts(doc)[1]["dp_one_run_bound"]["verdict"] == FAIL


def test_vacuous_param_is_validated(tmp_path):
    with pytest.raises(UserError, match="'vacuous_param'.*must be a parameter name") as err:
        policy_from(POLICY_HEAD + crit(vacuous_param='"a b"'), tmp_path)
    assert "\n" not in str(err.value)
