"""End-to-end ``audit run`` at the smoke preset on the built-in phantom (through the CLI)."""

import json

import numpy as np
import pandas as pd
import pytest

from audit.cli.main import main
from audit.core.results import load_results
from generators.sampleset import SampleSet

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(module_tmp):
    return module_tmp("cache")


@pytest.fixture(autouse=True)
def _cache_env(cache, monkeypatch):
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(cache))


#: generators audited by every stage at the plain smoke preset; the others skip the judge's
#: stages (the judge pass costs ~0.5 s/image)
FULL = ("holdout", "noise")


@pytest.fixture(scope="module")
def full_run(module_tmp):
    """``full_run(generator)``: the run dir of ``audit run --preset smoke`` with every stage on,
    made once per module (called inside a test, so the test's cache environment applies) and
    read by every test that needs it."""
    done = {}

    def run(generator: str):
        if generator not in done:
            out = module_tmp(f"full-{generator}") / generator
            assert main(["--quiet", "run", "--generator", generator, "--preset", "smoke", "--out", str(out)]) == 0
            done[generator] = out
        return done[generator]

    return run


@pytest.mark.parametrize("generator", ["copycat", "holdout", "noise", "gan", "vae", "ddpm", "ldm", "flow"])
def test_smoke_run_writes_a_complete_run_dir(generator, tmp_path, full_run):
    full = generator in FULL
    if full:
        out = full_run(generator)
    else:
        out = tmp_path / generator
        assert main(["--quiet", "run", "--generator", generator, "--preset", "smoke", "--out", str(out),
                     "--set", "audit.anatomy=false", "--set", "audit.fidelity=false", "--set", "audit.utility=false"]) == 0
    for name in ("config.json", "env.json", "run.log", "state.json", "splits.json", "samples.npz", "results.json"):
        assert (out / name).is_file(), name
    env = json.loads((out / "env.json").read_text())
    splits = json.loads((out / "splits.json").read_text())
    assert env["data_hash"] == splits["data_hash"]
    ids = [i for v in splits["splits"].values() for i in v]
    assert len(ids) == len(set(ids))  # no subject in two splits
    s = SampleSet.load(out / "samples.npz")
    cfg = json.loads((out / "config.json").read_text())
    assert len(s) == cfg["sample"]["n_samples"]
    assert s.images.shape[1:] == (cfg["data"]["size"],) * 2
    if generator != "copycat" and generator != "holdout":
        assert set(s.subject_ids) <= set(splits["splits"]["reference"])  # conditioned on reference masks
    results = load_results(out / "results.json")
    assert results["provenance"]["data_hash"] == env["data_hash"]
    agreement = results["anatomy"]["judge_agreement"]
    if full:
        assert 0 <= agreement["dice"]["mean"]["value"] <= 1 and agreement["dice"]["mean"]["n"] > 0
        assert (out / "anatomy_per_sample.csv").is_file() and (out / "features_judge.npz").is_file()
        fid = results["fidelity"]["judge"]["synthetic_vs_test"]["fid"]
        assert fid["value"] >= 0 and "judge" in fid["method"]
        assert "plausible_rate" in results["anatomy"]["plausibility"]["synthetic"]
        assert set(results["utility"]["vs_real"]) >= {"synthetic", "real+synthetic"}
        # planted effect: real pairs (holdout) are consistent labels, mask-shaped noise is not
        check = results["utility"]["synthetic_masks"]["fraction_of_ceiling"]
        assert f"verdict: {'consistent' if generator == 'holdout' else 'doubtful'}" in check["notes"], check
        assert (out / "report.html").is_file()
    else:
        assert agreement["status"] == "unavailable"
        assert results["fidelity"]["judge"]["status"] == "unavailable"


def test_privacy_audit_catches_copycat(tmp_path):
    """Planted leak through the whole pipeline: copycat samples are near-copies of members."""
    out = tmp_path / "copycat"
    assert main(["--quiet", "run", "--generator", "copycat", "--preset", "smoke", "--out", str(out),
                 "--set", "audit.anatomy=false", "--set", "audit.fidelity=false",
                 "--set", "sample.n_samples=200", "--set", "audit.privacy_max_images=200"]) == 0
    privacy = load_results(out / "results.json")["privacy"]
    assert privacy["summary"]["best_black_box_auc"]["value"] >= 0.99
    assert privacy["memorisation"]["pixel_correlation"]["copy_rate"]["value"] >= 0.9
    assert (out / "privacy_per_sample.csv").is_file() and (out / "privacy_curves.json").is_file()
    # non-members (issue 26): holdout + test subjects, never a train, reference or sample-conditioning subject
    splits = json.loads((out / "splits.json").read_text())["splits"]
    table = pd.read_csv(out / "privacy_per_sample.csv", dtype={"subject_id": str})
    nonmembers = set(table.loc[~table["member"], "subject_id"])
    conditioning = set(SampleSet.load(out / "samples.npz").subject_ids.tolist())
    assert nonmembers <= set(splits["holdout"]) | set(splits["test"]) and nonmembers & set(splits["test"])
    assert not nonmembers & (set(splits["train"]) | set(splits["reference"]) | conditioning)
    assert set(table.loc[~table["member"], "split"]) == {"holdout", "test"}
    assert "holdout" in privacy["setup"]["nonmember_subjects"]["notes"] and "test" in privacy["setup"]["nonmember_subjects"]["notes"]
    low = [n["image"]["tpr_at_lowest_fpr"] for n in privacy["attacks"].values() if "image" in n]
    assert all(e["params"]["fpr"] == 10 / privacy["setup"]["nonmember_images"]["value"] for e in low)
    assert max(e["value"] for e in low) >= 0.9  # the copies are found at the lowest supported FPR too


@pytest.mark.judge
def test_anatomy_separates_real_images_from_noise(full_run):
    """Planted effect: real unseen images agree with their masks far better than mask-shaped noise."""
    dice = {}
    for generator in FULL:
        out = full_run(generator)
        dice[generator] = load_results(out / "results.json")["anatomy"]["judge_agreement"]["dice"]["mean"]["value"]
    assert dice["holdout"] > 0.75 and dice["noise"] < dice["holdout"] - 0.3, dice


def test_interrupted_run_resumes(tmp_path, monkeypatch):
    out = tmp_path / "gan"
    import generators.mask2d as m

    original = m.MaskConditioned2D.sample

    def crash(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(m.MaskConditioned2D, "sample", crash)
    assert main(["--quiet", "run", "--generator", "gan", "--preset", "smoke", "--out", str(out),
                 "--set", "audit.anatomy=false", "--set", "audit.fidelity=false"]) == 130
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "failed" and set(state["stages"]) == {"cohort", "fit"}
    assert not (out / "results.json").exists()
    monkeypatch.setattr(m.MaskConditioned2D, "sample", original)
    assert main(["--quiet", "run", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "state.json").read_text())["status"] == "finished"
    assert (out / "results.json").is_file()
    # a fresh run with the same seed gives the same samples
    again = tmp_path / "again"
    assert main(["--quiet", "run", "--generator", "gan", "--preset", "smoke", "--out", str(again), "--no-cache",
                 "--set", "audit.anatomy=false", "--set", "audit.fidelity=false"]) == 0
    assert "fit_cache" not in json.loads((again / "state.json").read_text())["stages"]["fit"]  # really retrained
    np.testing.assert_array_equal(SampleSet.load(out / "samples.npz").images, SampleSet.load(again / "samples.npz").images)


def test_dp_run_records_the_ledger_and_signs_off_on_it(tmp_path, capsys):
    """A DP run with a fixed noise multiplier and 10 image canaries (the smoke phantom has 4
    training subjects: too few for subject canaries). The claim is not known before training, so
    the canary game's ceiling cannot be checked against it then: the run warns and the results
    entry records that the claim lies above the ceiling (delta = 1/40 leaves the game nothing to prove)."""
    out = tmp_path / "dp"
    assert main(["--quiet", "run", "--generator", "ldm", "--preset", "smoke", "--out", str(out),
                 "--dp-noise-multiplier", "1.0", "--dp-audit-canaries", "10", "--set", "dp.audit_canary_unit=image",
                 "--set", "audit.anatomy=false", "--set", "audit.fidelity=false", "--set", "audit.utility=false"]) == 0
    results = load_results(out / "results.json")
    # one-run audit: 10 canary images planted before training, scored after it, bound below the claim
    plan = json.loads((out / "canaries.json").read_text())
    assert plan["format"] == "cmr-audit/canaries/v2" and plan["unit"] == "image"
    assert [len(s) for s in plan["slices"]] == [1] * 10 and plan["n_train_slices"] > 20
    one_run = results["privacy"]["dp_verification"]["one_run_epsilon_lb"]
    assert one_run["n"] == 10 and one_run["value"] <= one_run["params"]["ceiling"] and "Steinke" in one_run["method"]
    assert one_run["params"]["claim_above_ceiling"] == 1.0 and "below the claim" in one_run["notes"]
    assert "not known before training" in (out / "run.log").read_text()
    assert json.loads((out / "state.json").read_text())["stages"]["privacy"]["canaries"] == 10  # taken out of the members
    dp = results["dp"]
    assert dp["noise_multiplier"]["value"] == pytest.approx(1.0) and dp["delta"]["value"] == pytest.approx(1 / 40)
    assert 0 < dp["epsilon_prv"]["value"] <= dp["epsilon"]["value"]
    assert set(dp["phases"]) == {"autoencoder", "latent_scale", "train"} and dp["mixed_phases"]["value"] == 0
    assert "vocabulary" in dp["data_dependent_steps"]["notes"]
    claim = results["privacy"]["dp_verification"]["claimed_epsilon"]
    assert claim["value"] == dp["epsilon"]["value"]  # the audit checks the accountant's figure
    stored = json.loads(next((out / "generator").glob("step-*/config.json")).read_text())
    assert stored["model_config"]["dp"]["unit"] == "subject" and stored["extra"]["dp"]["epsilon_rdp"] == dp["epsilon"]["value"]
    html = (out / "report.html").read_text("utf-8")
    assert "dp.epsilon" in html and "dp.phases.autoencoder.steps" in html
    assert "Privacy budget spent over training" in html and (out / "figures" / "dp_budget.png").is_file()
    from reports.sections.privacy import budget_plot

    curve = budget_plot(dp).axes[0].lines[0].get_ydata()
    assert curve[0] == 0 and abs(curve[-1] - dp["epsilon"]["value"]) < 1e-9  # the curve ends at the claim
    main(["--quiet", "signoff", str(out)])
    signoff = json.loads((out / "signoff.json").read_text())
    crit = {c["id"]: c for c in signoff["criteria"]}
    assert crit["dp_no_mixed_phases"]["verdict"] == "PASS"
    assert crit["dp_epsilon_lower_bound"]["verdict"] in ("PASS", "WARN")
    # the claim lies above what the canary game can prove: a pass that could not have failed is a WARN
    assert crit["dp_one_run_bound"]["verdict"] == "WARN" and "claim_above_ceiling = 1" in crit["dp_one_run_bound"]["reason"]


def test_dp_flags_are_refused_before_training(tmp_path, capsys):
    for flags, match in ((["--dp-epsilon", "0"], "--dp-epsilon must be a finite number > 0"),
                         (["--dp-epsilon", "8", "--dp-delta", "1.5"], "--dp-delta must be in"),
                         (["--dp-epsilon", "8", "--dp-delta", "0.4"], "must be below 1/N")):
        out = tmp_path / "x"
        assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(out), *flags]) != 0
        assert match in capsys.readouterr().err
    # canary requests that need the train split: refused when the fit stage starts, before any training step
    for unit in ("subject", "image"):
        out = tmp_path / f"canaries-{unit}"
        assert main(["--quiet", "run", "--generator", "ldm", "--preset", "smoke", "--out", str(out), "--dp-epsilon", "1",
                     "--dp-audit-canaries", "10", "--set", f"dp.audit_canary_unit={unit}"]) == 2
        n = len(json.loads((out / "splits.json").read_text())["splits"]["train"])  # the N the refusal names
        match = (f"the train split has {n} subjects, so at most {n // 2} can be canary subjects" if unit == "subject" else
                 f"10 canary images at delta {1 / (10 * n):.3g} can prove at most epsilon 0.00")
        assert match in capsys.readouterr().err
        state = json.loads((out / "state.json").read_text())
        assert set(state["stages"]) == {"cohort"} and state["current_stage"] == "fit"
        assert not (out / "canaries.json").exists() and not (out / "losses.csv").exists()
    assert main(["--quiet", "run", "--generator", "copycat", "--preset", "smoke", "--out", str(tmp_path / "c"),
                 "--dp-epsilon", "8"]) != 0
    assert "nothing to make private" in capsys.readouterr().err
