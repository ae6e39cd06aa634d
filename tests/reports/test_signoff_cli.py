"""``audit signoff`` through ``audit.cli.main.main``: exit codes, output, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from audit.cli.main import main
from audit.core.results import unavailable


import cmr_audit_test_signoff_fixtures as fx  # noqa: E402  (registered by conftest.py)


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_pass_is_exit_0(tmp_path, capsys):
    run = fx.write_run(tmp_path / "run", fx.good_doc())
    code, out, err = run_cli(["signoff", str(run)], capsys)
    assert code == 0, out + err
    assert "verdict: PASS (exit 0)" in out
    assert f"wrote {run / 'signoff.json'}" in out and f"wrote {run / 'signoff.html'}" in out
    assert "mia_auc" in out and "utility_vs_real" in out


def test_warn_is_exit_1(tmp_path, capsys):
    doc = fx.good_doc()
    doc["privacy"]["attacks"]["domias"]["image"]["auc"] = fx.m(0.62, (0.61, 0.63))
    run = fx.write_run(tmp_path / "run", doc)
    code, out, _ = run_cli(["signoff", str(run)], capsys)
    assert code == 1 and "verdict: WARN (exit 1)" in out


def test_fail_and_incomplete_are_exit_2(tmp_path, capsys):
    run = fx.write_run(tmp_path / "leaky", fx.leaky_doc())
    code, out, _ = run_cli(["signoff", str(run)], capsys)
    assert code == 2 and "verdict: FAIL (exit 2)" in out
    assert json.loads((run / "signoff.json").read_text())["verdict"] == "FAIL"
    run = fx.write_run(tmp_path / "no-utility", fx.without_utility(fx.good_doc()))
    code, out, _ = run_cli(["signoff", str(run)], capsys)
    assert code == 2 and "verdict: INCOMPLETE (exit 2)" in out


def test_policy_option(tmp_path, capsys):
    run = fx.write_run(tmp_path / "run", fx.without_utility(fx.good_doc()))
    text = default_text = (Path(__file__).resolve().parents[2] / "reports" / "policies" / "default.toml").read_text()
    # a policy without the utility criterion: the same run passes
    text = default_text[:default_text.index('[[criterion]]\nid = "utility_vs_real"')]
    policy = tmp_path / "no-utility.toml"
    policy.write_text(text)
    code, out, err = run_cli(["signoff", str(run), "--policy", str(policy)], capsys)
    assert code == 0, out + err
    assert str(policy) in out


def test_names_are_printed_literally(tmp_path, capsys):
    doc = fx.good_doc(run_id="[red]x[/red]", generator="[bold]gen[/bold]")
    run = fx.write_run(tmp_path / "run", doc)
    code, out, _ = run_cli(["signoff", str(run)], capsys)
    assert code == 0 and "[bold]gen[/bold]" in out and "[red]x[/red]" in out


@pytest.mark.parametrize("case, message", [
    ("no-dir", "no such run directory"),
    ("no-results", "results.json is missing"),
    ("other-schema", "schema version 'cmr-audit/results/v0' is not supported"),
    ("bad-policy-key", "unknown key 'thresold'"),
    ("bad-policy-type", "key 'threshold' must be a number"),
    ("no-policy", "no such file"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(case, message, tmp_path, capsys):
    run = fx.write_run(tmp_path / "run", fx.good_doc())
    args = ["signoff", str(run)]
    if case == "no-dir":
        args = ["signoff", str(tmp_path / "nope")]
    elif case == "no-results":
        (run / "results.json").unlink()
    elif case == "other-schema":
        doc = json.loads((run / "results.json").read_text())
        doc["schema"] = "cmr-audit/results/v0"
        (run / "results.json").write_text(json.dumps(doc))
    elif case.startswith("bad-policy"):
        policy = tmp_path / "p.toml"
        value = 'thresold = 0.5' if case == "bad-policy-key" else 'threshold = "0.5"'
        policy.write_text('policy_version = 1\nname = "p"\n[[criterion]]\nid = "c"\ntitle = "t"\n'
                          'metric = ["privacy", "summary", "best_black_box_auc"]\nop = "<="\n'
                          f'{value}\nrationale = "r"\n')
        args += ["--policy", str(policy)]
    elif case == "no-policy":
        args += ["--policy", str(tmp_path / "missing.toml")]
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (run / "signoff.json").exists() and not (run / "signoff.html").exists()


def test_help_documents_exit_codes(capsys):
    code, out, _ = run_cli(["signoff", "--help"], capsys)
    assert code == 0 and "Usage:" in out and "Example" in out
    assert "0  PASS" in out and "1  WARN" in out and "2  FAIL or INCOMPLETE" in out
    assert "--policy" in out and "INCOMPLETE" in out


def test_unavailable_white_box_is_listed_not_fatal(tmp_path, capsys):
    doc = fx.good_doc()
    doc["privacy"]["attacks"]["logan"] = unavailable("the generator has no discriminator")
    run = fx.write_run(tmp_path / "run", doc)
    code, out, _ = run_cli(["signoff", str(run)], capsys)
    assert code == 0
    s = json.loads((run / "signoff.json").read_text())
    mia = next(c for c in s["criteria"] if c["id"] == "mia_auc")
    assert {x["path_display"] for x in mia["skipped"]} == {"privacy.attacks.logan", "privacy.attacks.loss_threshold"}
