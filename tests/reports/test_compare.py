"""``audit compare`` (``reports.compare``): the comparison table, best-per-column marks, the
ranking with the policy applied, the trade-off figures, the CSV, escaping, and bad input.

Run directories come from the run-report fixture (``build_run_dir`` in ``test_run_report.py``)
and the sign-off fixtures (``test_signoff_fixtures.py``), loaded by path (pytest runs with
``--import-mode=importlib``; conftest.py registers them).
"""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import pytest

from audit.cli.main import main
from audit.core.errors import UserError
from audit.core.results import metric, unavailable, write_results
from reports import compare
from reports.policy import load_policy

EVIL = "<script>alert(1)</script>"
PNG_SIG = b"\x89PNG\r\n\x1a\n"


import cmr_audit_test_signoff_fixtures as fx  # noqa: E402  good_doc / leaky_doc / without_utility / write_run
import cmr_audit_test_run_report as rr  # noqa: E402  build_run_dir: every file an audit run writes



def set_entry(run: Path, path: tuple[str, ...], entry) -> None:
    doc = json.loads((run / "results.json").read_text())
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = entry
    write_results(run / "results.json", doc)


def three_runs(root: Path) -> list[Path]:
    """A reference run (noise), a run with a hostile generator name and an ldm run, with known
    figures: the ldm run has the best (lowest) AUC and FID ratio among the non-reference runs;
    the noise run is better still but, being a reference run, does not compete."""
    noise = rr.build_run_dir(root / "n", generator="noise")
    evil = rr.build_run_dir(root / "e", generator=EVIL)
    ldm = rr.build_run_dir(root / "l", generator="ldm")
    m = lambda v, ci=None, unit="1": metric(v, unit, method="test", ci=ci, n=16)  # noqa: E731
    set_entry(noise, ("privacy", "summary", "best_black_box_auc"), m(0.40, (0.3, 0.5)))
    set_entry(noise, ("fidelity", "judge", "fid_ratio_to_floor"), m(1.1))
    set_entry(evil, ("privacy", "summary", "best_black_box_auc"), m(0.70, (0.6, 0.8)))
    set_entry(evil, ("fidelity", "judge", "fid_ratio_to_floor"), m(4.0))
    set_entry(ldm, ("privacy", "summary", "best_black_box_auc"), m(0.55, (0.45, 0.65)))
    set_entry(ldm, ("fidelity", "judge", "fid_ratio_to_floor"), m(1.8))
    set_entry(ldm, ("fidelity", "judge", "synthetic_vs_test", "precision"), m(0.9))
    return [noise, evil, ldm]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One full comparison (real figures) of three runs, shared by the tests that inspect it."""
    root = tmp_path_factory.mktemp("cmp")
    runs = three_runs(root)
    out = root / "out" / "cmp.html"
    result = compare.write_compare(runs, out)
    return runs, result, out.read_text("utf-8")


@pytest.fixture
def no_figures(monkeypatch):
    """Skip matplotlib in tests about text, ranking and errors."""
    monkeypatch.setattr(compare, "comparison_figures", lambda runs, policy, fig_dir: [])


def _row(html: str, label: str) -> str:
    m = re.search(rf"<tr><th scope=\"row\">{re.escape(label)}(?:<span class=\"sub\">[^<]*</span>)?</th>(.*?)</tr>",
                  html, flags=re.S)
    assert m, label
    return m.group(1)


def _cells(row_html: str) -> list[str]:
    return re.findall(r"<td(?: class=\"best\")?>(.*?)</td>", row_html, flags=re.S)


def _best_cells(row_html: str) -> list[int]:
    return [i for i, td in enumerate(re.findall(r"<td( class=\"best\")?>", row_html)) if td]


def _col(label: str) -> int:
    """Index of a figure column among the table's cells (generator and verdict come first)."""
    return 2 + [c.id for c in compare.COLUMNS].index(label)


# --------------------------------------------------------------------------- the full report

def test_every_run_and_section_present(full):
    runs, result, html = full
    for sid in compare.SECTION_IDS:
        assert f'id="{sid}"' in html, sid
    for label in ("n/run", "e/run", "l/run"):  # three dirs named "run": labels get the parent
        assert f'<th scope="row">{label}' in html
        assert html.count(f">{label}<") >= 2  # table, ranking, criteria, runs
    for run in runs:
        assert str(run) in html  # the runs table names each directory
    assert "could not be drawn" not in html


def test_self_contained_and_images_decode(full):
    _, result, html = full
    rr.test_self_contained((None, html))  # no external refs, no scripts, CSP, every in-page link has its target
    srcs = rr._img_srcs(html)
    assert len(srcs) == 2  # privacy vs fidelity, privacy vs utility
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_SIG)
    assert " title=" not in html  # reasons are footnotes, never tooltips


def test_figures_and_csv_written(full):
    runs, result, html = full
    assert result.figures_dir.name == "cmp_figures" and result.csv_path.name == "cmp.csv"
    for stem in ("privacy_vs_fidelity", "privacy_vs_utility"):
        assert (result.figures_dir / f"{stem}.png").read_bytes().startswith(PNG_SIG)
        assert b"<svg" in (result.figures_dir / f"{stem}.svg").read_bytes()[:2000]
        assert f"cmp_figures/{stem}.png" in html
    with result.csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {"row", "column", "value", "ci_low", "ci_high", "status", "reason", "detail", "best"} <= set(rows[0])
    assert {r["row"] for r in rows} == {"n/run", "e/run", "l/run"}
    auc = {r["row"]: r for r in rows if r["column"] == "best black-box MIA AUC"}
    assert float(auc["l/run"]["value"]) == pytest.approx(0.55) and float(auc["l/run"]["ci_low"]) == pytest.approx(0.45)
    assert auc["l/run"]["best"] == "yes" and auc["e/run"]["best"] == "" and auc["n/run"]["best"] == ""
    util = [r for r in rows if r["column"].startswith("utility")]
    assert util and all(r["status"] == "unavailable" and "utility audit is not available yet" in r["reason"] for r in util)
    # the fixture's copy rate (6.25 %) fails the default policy in every run
    assert {r["value"] for r in rows if r["column"] == "verdict"} == {"FAIL"}
    assert not list(result.figures_dir.glob(".*.tmp")) and not list(result.html_path.parent.glob(".*.tmp"))


def test_generator_names_are_escaped(full):
    _, result, html = full
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # table, ranking and runs table
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    with result.csv_path.open() as fh:
        assert any(r["value"] == EVIL for r in csv.DictReader(fh))  # the CSV keeps the raw text


def test_best_per_column_marked(full):
    _, _, html = full
    ldm, evil, noise = _row(html, "l/run"), _row(html, "e/run"), _row(html, "n/run")
    # the reference run (noise) has the lowest AUC and FID ratio but does not compete
    assert not _best_cells(noise)
    assert _col("mia_auc_bb") in _best_cells(ldm) and _col("mia_auc_bb") not in _best_cells(evil)
    assert _col("fid_ratio") in _best_cells(ldm) and _col("precision") in _best_cells(ldm)
    # ties are all marked (same Dice in both runs); columns without a direction never are
    assert _col("dice") in _best_cells(ldm) and _col("dice") in _best_cells(evil)
    for col in ("fid_floor", "dice_ceiling", "eps_claimed"):
        assert _col(col) not in _best_cells(ldm) + _best_cells(evil)
    assert "&#9733;" in _cells(ldm)[_col("mia_auc_bb")]


def test_missing_sections_are_na_with_footnote(full):
    _, _, html = full
    cell = _cells(_row(html, "l/run"))[_col("utility")]
    note = re.search(r'href="#fn-(\d+)"', cell).group(1)
    assert 'class="na">n/a' in cell
    footnote = re.search(rf'<li id="fn-{note}">(.*?)</li>', html).group(1)
    assert "the utility audit is not available yet" in footnote
    # the utility panel is still drawn, with a note
    assert "utility is not available for any run" in html


# --------------------------------------------------------------------------- marks and ranking (no figures)

def _runs(tmp_path: Path, docs: dict) -> list[Path]:
    return [fx.write_run(tmp_path / name, doc) for name, doc in docs.items()]


def test_best_marks_chance_floor_and_reference_only(tmp_path):
    docs = {"a": fx.good_doc(generator="ldm"), "b": fx.good_doc(generator="gan")}
    docs["a"]["privacy"]["summary"]["best_black_box_auc"] = fx.m(0.45)
    docs["b"]["privacy"]["summary"]["best_black_box_auc"] = fx.m(0.50)
    runs = compare.load_runs(_runs(tmp_path, docs), load_policy())
    assert compare.best_marks(runs)["mia_auc_bb"] == {0, 1}  # below chance counts as chance: a tie
    docs = {"h": fx.good_doc(generator="holdout"), "c": fx.good_doc(generator="copycat")}
    docs["c"]["fidelity"]["judge"]["fid_ratio_to_floor"] = fx.m(0.9)
    runs = compare.load_runs(_runs(tmp_path / "ref", docs), load_policy())
    assert all(r.is_reference for r in runs)
    assert compare.best_marks(runs)["fid_ratio"] == {1}  # only reference runs: they compete


def test_ranking_verdict_then_tie_breaks(tmp_path, no_figures, capsys):
    warn = fx.good_doc(generator="vae")
    warn["privacy"]["attacks"]["domias"]["image"]["auc"] = fx.m(0.62, (0.61, 0.63))
    incomplete_hi = fx.without_utility(fx.good_doc(generator="flow"))
    incomplete_hi["privacy"]["summary"]["best_black_box_auc"] = fx.m(0.58)
    incomplete_lo = fx.without_utility(fx.good_doc(generator="ddpm"))
    unrealistic = fx.good_doc(generator="gan")  # fails three fidelity / anatomy criteria, leaks nothing
    unrealistic["fidelity"]["judge"]["synthetic_vs_test"]["fid"] = fx.m(50.0, (45.0, 55.0), unit="feature units^2")
    unrealistic["anatomy"]["plausibility"]["synthetic"]["plausible_rate"] = fx.m(0.5, (0.4, 0.6))
    unrealistic["anatomy"]["judge_agreement"]["dice"]["mean"] = fx.m(0.3, (0.2, 0.4))
    docs = {"leaky": fx.leaky_doc(), "incomplete-hi": incomplete_hi, "unrealistic": unrealistic, "warn": warn,
            "pass": fx.good_doc(), "incomplete-lo": incomplete_lo}
    dirs = _runs(tmp_path, docs)
    runs = compare.load_runs(dirs, load_policy())
    order = [r.label for r in compare.rank_runs(runs)]
    # PASS, WARN, INCOMPLETE (lower AUC first), FAIL: privacy first, so the run that fails three quality
    # criteria but leaks nothing ranks above the leak that fails two
    assert order == ["pass", "warn", "incomplete-lo", "incomplete-hi", "unrealistic", "leaky"]
    assert {r.label: r.verdict for r in runs} == {"pass": "PASS", "warn": "WARN", "incomplete-hi": "INCOMPLETE",
                                                  "incomplete-lo": "INCOMPLETE", "unrealistic": "FAIL", "leaky": "FAIL"}
    assert not any((d / "signoff.json").exists() or (d / "signoff.html").exists() for d in dirs)

    code = main(["compare", *map(str, dirs), "--out", str(tmp_path / "c.html")])
    out = capsys.readouterr().out
    assert code == 0
    lines = [ln for ln in out.splitlines() if re.match(r"\s*\d+\. ", ln)]
    assert [ln.split(". ", 1)[1].split(" ")[0] for ln in lines] == order
    assert "1. pass (ldm): PASS" in out and "6. leaky (copycat): FAIL" in out
    html = (tmp_path / "c.html").read_text()
    ranking = html[html.index('id="ranking"'):html.index('id="criteria"')]
    assert [ranking.index(f">{label}<") for label in order] == sorted(ranking.index(f">{label}<") for label in order)
    assert "copy_rate" in ranking and "is not &lt;= 0.01" in ranking  # the leak's reason is shown


def test_pareto_front():
    pts = [(1.0, 0.9), (2.0, 0.6), (3.0, 0.7), (4.0, 0.5), (2.0, 0.6)]
    assert compare.pareto_front(pts) == [0, 1, 3, 4]  # (3, 0.7) is beaten by (2, 0.6); duplicates both stay
    assert compare.pareto_front([(0.02, 0.7), (0.01, 0.6), (-0.05, 0.55)], x_better="higher") == [0, 1, 2]
    assert compare.pareto_front([(0.02, 0.5), (0.01, 0.6)], x_better="higher") == [0]
    assert compare.pareto_front([]) == []


def test_tradeoff_figure_draws_front_and_empty_panel():
    pts = [{"label": "a", "x": 1.0, "y": 0.7, "xci": (0.8, 1.2), "yci": (0.6, 0.8)},
           {"label": "b", "x": 2.0, "y": 0.5, "reference": True}]
    fig = compare.tradeoff_figure(pts, xlabel="x", ylabel="y", title="t", x_better="lower",
                                  lines=[{"axis": "x", "at": 3.0, "label": "policy"}])
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "Pareto front" in labels and "b (reference)" in labels and "policy" in labels
    empty = compare.tradeoff_figure([], xlabel="x", ylabel="y", title="t", x_better="higher", note="nothing here")
    assert any(t.get_text() == "nothing here" for t in empty.axes[0].texts)


# --------------------------------------------------------------------------- runs with missing parts

def test_missing_sections_and_state(tmp_path, no_figures):
    run = rr.build_run_dir(tmp_path / "a", generator="gan")
    doc = json.loads((run / "results.json").read_text())
    doc["anatomy"] = {"audit": unavailable("the anatomy audit was switched off")}
    del doc["fidelity"]["judge"]
    write_results(run / "results.json", doc)
    (run / "state.json").unlink()
    html, ctx = compare.render_compare([run], out=tmp_path / "c.html")
    (r,) = ctx["runs"]
    assert r.cells["dice"]["status"] == "unavailable" and "the anatomy audit was switched off" in r.cells["dice"]["reason"]
    assert "fidelity.judge is not in results.json" in r.cells["fid"]["reason"]
    assert r.cells["train_s"]["reason"] == "state.json is missing"
    reasons = ctx["table"].reasons
    assert any("the anatomy audit was switched off" in x for x in reasons)
    assert "whether the run finished is unknown" in html
    assert html.count('class="na">n/a') >= 8


# --------------------------------------------------------------------------- CLI and bad input

def _cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_and_exits_0(tmp_path, no_figures, capsys):
    a = fx.write_run(tmp_path / "a", fx.good_doc())
    code, out, err = _cli(["compare", str(a), "--out", str(tmp_path / "x" / "c.html")], capsys)
    assert code == 0, err
    assert f"wrote {tmp_path / 'x' / 'c.html'}" in out and f"wrote {tmp_path / 'x' / 'c.csv'}" in out
    assert (tmp_path / "x" / "c.html").is_file() and (tmp_path / "x" / "c.csv").is_file()


def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    good = fx.write_run(tmp_path / "good", fx.good_doc())
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    old = fx.good_doc()
    old["schema"] = "cmr-audit/results/v0"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text(json.dumps(old))
    bad_policy = tmp_path / "p.toml"
    bad_policy.write_text('policy_version = 1\nname = "x"\nbogus = 1\n')
    g = str(good)
    return [
        ([str(tmp_path / "nope")], "no such run directory"),
        ([str(tmp_path / "empty")], "not a run directory (no results.json, config.json or state.json)"),
        ([str(tmp_path / "file.txt")], "not a directory"),
        ([str(unfinished)], "results.json is missing"),
        ([g, str(tmp_path / "old")], "schema version 'cmr-audit/results/v0' is not supported"),
        ([g, str(tmp_path / "good" / ".." / "good")], "run directory given twice"),
        ([g, "--policy", str(bad_policy)], "unknown key 'bogus'"),
        ([g, "--out", str(tmp_path / "c.txt")], "give an .html file name"),
    ]


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    for args, message in _bad_inputs(tmp_path):
        out_dir = tmp_path / "out"
        code, out, err = _cli(["compare", *args, "--out", str(out_dir / "c.html")] if "--out" not in args
                              else ["compare", *args], capsys)
        assert code == 2, (args, out, err)
        assert err.startswith("error: ") and message in err, (message, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out_dir.exists()  # nothing written
    assert not (tmp_path / "good" / "signoff.json").exists()


def test_no_run_dirs(tmp_path, capsys):
    code, _, err = _cli(["compare", "--out", str(tmp_path / "c.html")], capsys)
    assert code == 2 and "Missing argument" in err
    with pytest.raises(UserError, match="at least one run directory"):
        compare.load_runs([], load_policy())


def test_dp_tradeoff_figure_only_with_a_dp_claim(tmp_path, full):
    _, result, html = full
    assert not (result.figures_dir / "dp_tradeoff.png").exists() and "dp_tradeoff" not in html
    m = lambda v, unit="1": metric(v, unit, method="test", n=16)  # noqa: E731
    runs = []
    for eps, dice, auc in ((None, 0.86, 0.9), (8.0, 0.5, 0.6), (4.0, 0.3, 0.52)):
        run = rr.build_run_dir(tmp_path / f"ldm-{eps}", generator="ldm")
        set_entry(run, ("anatomy", "judge_agreement", "dice", "mean"), m(dice))
        set_entry(run, ("privacy", "summary", "best_black_box_auc"), m(auc))
        if eps is not None:
            set_entry(run, ("privacy", "dp_verification", "claimed_epsilon"), m(eps))
        runs.append(run)
    res = compare.write_compare(runs, tmp_path / "dp" / "cmp.html")
    assert (res.figures_dir / "dp_tradeoff.png").read_bytes().startswith(PNG_SIG)
    page = res.html_path.read_text("utf-8")
    assert "DP trade-off" in page and "cmp_figures/dp_tradeoff.png" in page
    series = {"ldm": [{"eps": None, "dice": 0.86}, {"eps": 8.0, "dice": 0.5}]}
    fig = compare.epsilon_figure(series)
    ax = fig.axes[0]
    xs, ys = ax.lines[0].get_data()
    assert list(ys) == [0.5, 0.86] and xs[1] > xs[0]  # infinity is drawn right of the largest epsilon
    assert ax.get_xticklabels()[-1].get_text() == "\u221e"
