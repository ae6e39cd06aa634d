"""Run-directory layout, reuse rules and --resume, with a stand-in generator and toy stages."""

import json
import os

import pytest

from audit.pipeline import run as R
from audit.core.errors import UserError
from audit.core.results import load_results
from audit.pipeline.rundir import RunDir
from generators import registry


@pytest.fixture
def fake_generator(monkeypatch):
    entries = {"toy": registry.GeneratorEntry("toy", "available", description="test stand-in", presets={"smoke": {"train.steps": 3}})}
    monkeypatch.setattr(registry, "discover", lambda: entries)
    return entries["toy"]


def _stages(calls, fail_at=None):
    def make(name):
        def run(ctx):
            calls.append(name)
            if name == fail_at:
                raise KeyboardInterrupt  # an interruption mid-run
            (ctx.run_dir.path / f"{name}.out").write_text(name)
            return {"items": 1}

        def load(ctx):
            calls.append(f"load:{name}")

        return R.Stage(name, run, load)

    return [make("cohort"), make("fit"), make("sample")]


def test_layout(tmp_path, fake_generator):
    calls = []
    out = R.execute(R.RunRequest(generator="toy", preset="smoke", out=tmp_path / "run", overrides={"seed": 7}), _stages(calls))
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "env.json", "run.log", "state.json", "results.json"} <= names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 7 and cfg["preset"] == "smoke" and cfg["generator"] == "toy"
    assert cfg["train"]["steps"] == 3  # generator preset applied
    env = json.loads((out / "env.json").read_text())
    assert {"python", "packages", "git", "cpu_count"} <= set(env)
    assert os.uname().nodename not in json.dumps(env)  # hostname-free
    results = load_results(out / "results.json")
    assert results["provenance"]["seed"] == 7
    assert set(results["provenance"]["timing_s"]) == {"cohort", "fit", "sample"}
    assert results["privacy"]["audit"]["status"] == "unavailable"
    assert json.loads((out / "state.json").read_text())["status"] == "finished"
    assert "stage fit: done" in (out / "run.log").read_text()
    assert calls == ["cohort", "fit", "sample"]


def test_default_directory_name(tmp_path, fake_generator, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = R.execute(R.RunRequest(generator="toy", preset="smoke"), _stages([]))
    assert out.parent == tmp_path / "runs" or out.parent.resolve() == (tmp_path / "runs").resolve()
    assert out.name.endswith("-toy") and out.name[:8].isdigit() and "T" in out.name


def test_non_empty_dir_needs_resume_or_force(tmp_path, fake_generator):
    out = tmp_path / "run"
    R.execute(R.RunRequest(generator="toy", preset="smoke", out=out), _stages([]))
    before = (out / "config.json").read_text()
    with pytest.raises(UserError, match="not empty.*--resume.*--force"):
        R.execute(R.RunRequest(generator="toy", preset="smoke", out=out, overrides={"seed": 2}), _stages([]))
    assert (out / "config.json").read_text() == before  # nothing overwritten
    R.execute(R.RunRequest(generator="toy", preset="smoke", out=out, overrides={"seed": 2}, force=True), _stages([]))
    assert json.loads((out / "config.json").read_text())["seed"] == 2


def test_force_refuses_foreign_directory(tmp_path, fake_generator):
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(UserError, match="not a cmr-audit run directory"):
        R.execute(R.RunRequest(generator="toy", preset="smoke", out=foreign, force=True), _stages([]))
    assert (foreign / "thesis.tex").read_text() == "precious"


def test_unwritable_out(tmp_path, fake_generator):
    # a parent that is a file cannot hold a directory, whoever runs the test (root included)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write to run directory"):
        RunDir.prepare(blocker / "run", "toy")


def test_out_is_a_file(tmp_path, fake_generator):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        RunDir.prepare(f, "toy")


def test_resume_skips_finished_stages(tmp_path, fake_generator):
    out = tmp_path / "run"
    calls = []
    with pytest.raises(KeyboardInterrupt):
        R.execute(R.RunRequest(generator="toy", preset="smoke", out=out), _stages(calls, fail_at="sample"))
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "failed" and set(state["stages"]) == {"cohort", "fit"}
    assert state["current_stage"] == "sample"  # where it stopped
    assert not (out / "results.json").exists()
    calls.clear()
    R.execute(R.RunRequest(out=out, resume=True), _stages(calls))
    assert calls == ["load:cohort", "load:fit", "sample"]
    assert (out / "results.json").is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "finished" and state["current_stage"] is None


def test_resume_with_other_config_is_refused(tmp_path, fake_generator):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        R.execute(R.RunRequest(generator="toy", preset="smoke", out=out), _stages([], fail_at="fit"))
    with pytest.raises(UserError, match="differs.*seed"):
        R.execute(R.RunRequest(out=out, resume=True, overrides={"seed": 5}), _stages([]))
    with pytest.raises(UserError, match="differs.*preset"):
        R.execute(R.RunRequest(out=out, resume=True, preset="quick"), _stages([]))


def test_resume_without_out_picks_latest_unfinished(tmp_path, fake_generator, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        R.execute(R.RunRequest(generator="toy", preset="smoke"), _stages([], fail_at="fit"))
    out = R.execute(R.RunRequest(generator="toy", resume=True), _stages([]))
    assert (out / "results.json").is_file()
    with pytest.raises(UserError, match="no unfinished run"):
        R.execute(R.RunRequest(generator="toy", resume=True), _stages([]))


def test_unknown_and_planned_generators(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown generator 'nope'"):
        R.execute(R.RunRequest(generator="nope", out=tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_config_json_holds_resolved_generator_options_and_an_older_one_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    ctx = R.prepare(R.RunRequest(generator="ldm", preset="smoke", out=out))
    cls = ctx.entry.cls
    stored = json.loads((out / "config.json").read_text())
    given = {k.split(".", 1)[1]: v for k, v in cls.presets["smoke"].items() if k.startswith("generator_options.")}
    assert stored["generator_options"] == cls.resolve_options(given) == ctx.cfg.generator_options
    assert stored["generator_options"]["ae"]["latent_channels"] == 4  # nested autoencoder defaults included
    # a run directory of an older version stored the options as given: it resumes, and its config.json
    # is brought to the resolved form (the same generator, so the same fit-cache key)
    stored["generator_options"] = given
    (out / "config.json").write_text(json.dumps(stored))
    again = R.prepare(R.RunRequest(out=out, resume=True, overrides={"generator_options.lr": "2e-4"}))
    assert again.cfg == ctx.cfg
    assert json.loads((out / "config.json").read_text()) == json.loads(json.dumps(stored | {"generator_options": ctx.cfg.generator_options}))
    with pytest.raises(UserError, match="differs .* in generator_options"):
        R.prepare(R.RunRequest(out=out, resume=True, overrides={"generator_options.lr": "1e-3"}))
