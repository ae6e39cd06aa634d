"""The CLI surface: help for every (sub)command, exit codes, one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cli.main import app, main
from audit.core.errors import UserError

COMMANDS = [[], ["run"], ["compare"], ["signoff"], ["generators"], ["data"], ["judge"]]


def _subcommands(group):
    import typer.main

    cmd = typer.main.get_command(app)
    for name in group:
        cmd = cmd.commands[name]
    return sorted(getattr(cmd, "commands", {}) or {})


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "audit")
def test_help_for_every_command(cmd, capsys):
    code, out, _ = _run(cmd + ["--help"], capsys)
    assert code == 0
    assert "Usage:" in out
    if cmd and cmd[0] not in ("data", "judge"):
        assert "Example" in out


@pytest.mark.parametrize("group", [["data"], ["judge"]])
def test_help_for_every_subsubcommand(group, capsys):
    subs = _subcommands(group)
    assert subs, f"{group} has no subcommands"
    for sub in subs:
        code, out, _ = _run(group + [sub, "--help"], capsys)
        assert code == 0 and "Usage:" in out, sub
        assert "Example" in out or "example" in out, f"{group + [sub]} --help has no example"


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "--generator", "nope"], 2, "error: unknown generator 'nope'"),
        (["run", "--generator", "copycat", "--preset", "fast"], 2, "error: unknown preset 'fast'"),
        (["run", "--generator", "copycat", "--set", "train.stepz=1"], 2, "error: unknown config key 'train.stepz'"),
        (["run", "--generator", "future"], 3, "not available yet: generator 'future'"),
        (["compare", "a", "b"], 2, "error: a: no such run directory"),
        (["signoff", "a"], 2, "error: a: no such run directory"),
    ],
)
def test_errors_are_one_line_with_exit_code(args, code, message, capsys, tmp_path, monkeypatch):
    from generators import registry

    # a planned-but-unbuilt family, independent of which real families exist today
    monkeypatch.setitem(registry.PLANNED, "future", "a family that is planned but not built")
    monkeypatch.chdir(tmp_path)
    got, out, err = _run(args, capsys)
    assert got == code
    assert err.strip().startswith(message)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing was created


def test_usage_error_exits_2(capsys):
    code, _, err = _run(["run", "--bogus"], capsys)
    assert code == 2 and "No such option" in err


def test_generators_lists_builtins_and_planned(capsys, monkeypatch):
    from generators import registry

    code, out, _ = _run(["generators"], capsys)
    assert code == 0
    for name in ("copycat", "holdout", "noise", "external", "ldm", "gan", "cine"):
        assert name in out
    assert "not available yet" not in out  # every promised family is built
    monkeypatch.setitem(registry.PLANNED, "future", "a family not built yet")
    code, out, _ = _run(["generators"], capsys)
    assert code == 0 and "future" in out and "not available yet" in out


def test_console_script_is_installed():
    proc = subprocess.run([sys.executable, "-m", "audit", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("cmr-audit ")


# --------------------------------------------------------------------------- input checked before any stage

def _hostile_inputs(d):
    """``(args, needle)`` pairs for :func:`test_bad_run_input_is_one_line_before_any_stage`; ``d`` is
    a scratch folder. Each was an ``internal error`` (exit 1), a misleading message, or an error
    only after the cohort stage, before the inputs were checked at the boundary."""
    import io
    import zipfile

    import numpy as np

    (d / "a-file").write_text("x")
    (d / "not-a-zip.npz").write_bytes(b"just some bytes, no zip")
    good = d / "good.npz"
    np.savez(good, images=np.zeros((2, 8, 8), np.float32), spacing=np.ones(2, np.float32))
    (d / "truncated.npz").write_bytes(good.read_bytes()[:200])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**3, 10**3)})
    with zipfile.ZipFile(d / "huge.npz", "w") as zf:
        zf.writestr("images.npy", header.getvalue() + b"\0" * 64)  # declares 4 TB, holds 64 bytes
        zf.writestr("spacing.npy", b"")
    (d / "splits.json").write_text(json.dumps({"schema": "cmr-audit/splits/v1", "data_hash": "abc",
                                               "splits": {"train": 5, "holdout": [], "reference": [], "test": []}}))
    (d / "nohash.json").write_text(json.dumps({"schema": "cmr-audit/splits/v1",
                                               "splits": {"train": [], "holdout": [], "reference": [], "test": []}}))
    (d / "empty-train.json").write_text(json.dumps({"schema": "cmr-audit/splits/v1", "data_hash": "abc", "splits": {
        "train": [], "holdout": ["a"], "reference": ["b"], "test": ["c"]}}))
    (d / "inf.toml").write_text("[train]\nema_decay = inf\n")
    (d / "nan.json").write_text('{"dp": {"delta": NaN}}')
    return [
        (["--dp-epsilon", "inf"], "--dp-epsilon must be a finite number > 0, got inf"),
        (["--dp-epsilon", "nan"], "--dp-epsilon must be a finite number > 0, got nan"),
        (["--dp-delta", "nan"], "--dp-delta must be in (0, 1), got nan"),
        (["--dp-delta", "inf"], "--dp-delta must be in (0, 1), got inf"),
        (["--dp-max-grad-norm", "inf"], "--dp-max-grad-norm must be a finite number > 0, got inf"),
        (["--dp-noise-multiplier", "nan"], "--dp-noise-multiplier must be a finite number > 0, got nan"),
        (["--set", "train.ema_decay=inf"], "config key 'train.ema_decay' must be a finite number, got inf"),
        (["--set", "dp.epsilon=nan"], "config key 'dp.epsilon' must be a finite number, got nan"),
        (["--set", "dp.max_grad_norm=-inf"], "config key 'dp.max_grad_norm' must be a finite number, got -inf"),
        (["--set", "generator_options.width=NaN"], "config key 'generator_options.width' must be a finite number"),
        (["--set", "train.ema_decay=1" + "0" * 400], "config key 'train.ema_decay' must be a finite number, got inf"),
        (["--config", str(d / "inf.toml")], "config key 'train.ema_decay' must be a finite number, got inf"),
        (["--config", str(d / "nan.json")], "config key 'dp.delta' must be a finite number, got nan"),
        (["--seed", "-1"], "--seed must be in [0, 2**32), got -1"),
        (["--seed", str(2**32)], f"--seed must be in [0, 2**32), got {2**32}"),
        (["--set", "seed=-3"], "seed must be in [0, 2**32), got -3"),
        (["--set", f"data.split_seed={2**32}"], "data.split_seed must be in [0, 2**32)"),
        (["--split-file", str(d / "splits.json")], "splits.json: invalid split file at 'splits/train': 5 is not of type 'array'"),
        (["--split-file", str(d / "nohash.json")], "nohash.json: invalid split file at '<top>': 'data_hash' is a required property"),
        (["--split-file", str(d / "missing.json")], "missing.json: split file not found"),
        (["--split-file", str(d / "empty-train.json")], "empty-train.json: the train split is empty"),
        (["--samples", str(d / "missing.npz")], "missing.npz: sample set not found"),
        (["--samples", str(d / "not-a-zip.npz")], "not-a-zip.npz: not an .npz sample set (not a zip archive)"),
        (["--samples", str(d / "truncated.npz")], "truncated.npz: truncated or corrupt .npz (zip) archive"),
        (["--samples", str(d / "huge.npz")], "huge.npz: member 'images.npy' declares shape (1000000, 1000, 1000)"),
        (["--out", str(d / "a-file" / "run")], "cannot write to run directory"),
        (["--out", str(d / ("x" * 300))], "is 300 bytes, longer than the"),
        (["--data", str(d / "no-such-folder")], "no-such-folder does not exist"),
        (["--utility-test-data", str(d / "no-such-folder")], "--utility-test-data " + str(d / "no-such-folder") + ": no such directory"),
        (["--set", "sample.sampler_steps=-1"], "sample.sampler_steps must be >= 1"),
        (["--set", "train.num_threads=-3"], "train.num_threads must be >= 0"),
        (["--set", "data.phantom_subjects=100000000000"], "data.phantom_subjects must be in [1, 5000]"),
        (["--set", "sample.n_samples=10000000"], "must fit a sample set (16 GiB)"),
        (["--generator", "gan", "--set", "generator_options.z_dim=-1"], "generator 'gan': option z_dim must be >= 1"),
        (["--generator", "gan", "--set", "generator_options.channels=[0]"], "option channels must be a non-empty list"),
        (["--generator", "gan", "--set", "generator_options.lr_g=1e999"], "config key 'generator_options.lr_g' must be a"),
        (["--generator", "gan", "--set", "generator_options.zdim=8"], "generator 'gan': unknown option(s) ['zdim']"),
        (["--generator", "ldm", "--set", "generator_options.norm_groups=7"], "must all be divisible by norm_groups 7"),
        (["--generator", "cine", "--set", "generator_options.frames=abc"], "option frames must be an integer, got 'abc'"),
        (["--generator", "cine", "--set", 'generator_options.ae={"latent_channels": "x"}'],
         "option ae.latent_channels must be an integer"),
    ]


def test_bad_run_input_is_one_line_before_any_stage(capsys, tmp_path, monkeypatch):
    """Every hostile input of ``audit run`` is one line, exit 2, naming the input, and is found in
    the preparation: no stage runs (a stage that runs is an internal error here) and no run
    directory is made."""
    from audit.pipeline import run, stages

    def no_stage(ctx):
        raise AssertionError("a stage ran")

    monkeypatch.setattr(stages, "PIPELINE", [run.Stage("cohort", no_stage)])
    monkeypatch.chdir(tmp_path)
    cases = _hostile_inputs(tmp_path)
    for args, needle in cases:
        out = tmp_path / "out"
        argv = ["run", "--generator", "copycat", "--preset", "smoke", *(["--out", str(out)] if "--out" not in args else []), *args]
        code, _, err = _run(argv, capsys)
        assert code == 2, (args, err)
        assert err.startswith("error: ") and needle in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not out.exists() and not (tmp_path / "runs").exists(), args


def test_unwritable_cache_folder_is_one_line_naming_the_env_var(capsys, tmp_path, monkeypatch):
    from audit.pipeline import run, stages

    monkeypatch.setattr(stages, "PIPELINE", [run.Stage("cohort", lambda ctx: (_ for _ in ()).throw(AssertionError("a stage ran")))])
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "a-file" / "cache"))
    code, _, err = _run(["run", "--generator", "copycat", "--preset", "smoke", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"error: cache folder {tmp_path / 'a-file' / 'cache'} is not writable" in err and "$CMR_AUDIT_CACHE" in err
    assert not (tmp_path / "out").exists()


def test_an_unwritable_cache_sub_folder_is_found_before_any_stage(capsys, tmp_path, monkeypatch):
    """A run writes into the cache's sub-folders (generators, autoencoders, ...): each existing one
    is probed at the start, not only the root (the probe's failure is simulated: root may write
    anywhere)."""
    import tempfile

    from audit.pipeline import run, stages

    monkeypatch.setattr(stages, "PIPELINE", [run.Stage("cohort", lambda ctx: (_ for _ in ()).throw(AssertionError("a stage ran")))])
    cache = tmp_path / "cache"
    (cache / "generators").mkdir(parents=True)
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(cache))
    real = tempfile.mkstemp

    def mkstemp(*a, dir=None, **k):
        if dir is not None and Path(dir).name == "generators":
            raise PermissionError(13, "Permission denied")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    code, _, err = _run(["run", "--generator", "copycat", "--preset", "smoke", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cache folder {cache / 'generators'} is not writable (Permission denied)" in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_cache_and_out_folders(capsys, tmp_path, monkeypatch):
    from audit.pipeline import run, stages

    monkeypatch.setattr(stages, "PIPELINE", [run.Stage("cohort", lambda ctx: (_ for _ in ()).throw(AssertionError("a stage ran")))])
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        monkeypatch.setenv("CMR_AUDIT_CACHE", str(ro))
        code, _, err = _run(["run", "--generator", "copycat", "--preset", "smoke", "--out", str(tmp_path / "out")], capsys)
        assert code == 2 and f"cache folder {ro} is not writable" in err, err
        monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
        code, _, err = _run(["run", "--generator", "copycat", "--preset", "smoke", "--out", str(ro / "run")], capsys)
        assert code == 2 and f"cannot write to run directory {ro / 'run'}" in err, err
    finally:
        ro.chmod(0o700)


def test_good_inputs_pass_the_preparation_and_resume_skips_consumed_ones(tmp_path):
    """The checks above do not refuse good input, and ``--resume`` does not ask again for an input
    that a finished stage has consumed (the sample set after ``sample``, the split file after
    ``cohort``)."""
    import numpy as np

    from audit.pipeline.run import RunRequest, prepare
    from cohorts.splits import SCHEMA

    samples, split_file = tmp_path / "s.npz", tmp_path / "splits.json"
    np.savez(samples, images=np.zeros((2, 8, 8), np.float32), spacing=np.ones(2, np.float32))
    split_file.write_text(json.dumps({"schema": SCHEMA, "data_hash": "abc",
                                      "splits": {"train": ["a"], "holdout": ["b"], "reference": [], "test": []}}))
    overrides = {"generator_options.samples": str(samples), "data.split_file": str(split_file)}
    ctx = prepare(RunRequest(generator="external", preset="smoke", out=tmp_path / "run", overrides=overrides))
    assert ctx.cfg.generator_options["samples"] == str(samples) and ctx.run_dir.config_path.is_file()
    samples.unlink()
    split_file.unlink()
    with pytest.raises(UserError, match="split file not found"):
        prepare(RunRequest(out=tmp_path / "run", resume=True))
    ctx.run_dir.mark_stage("cohort")
    with pytest.raises(UserError, match="s.npz: sample set not found"):
        prepare(RunRequest(out=tmp_path / "run", resume=True))
    ctx.run_dir.mark_stage("fit")
    ctx.run_dir.mark_stage("sample")
    assert prepare(RunRequest(out=tmp_path / "run", resume=True)).cfg.generator == "external"
