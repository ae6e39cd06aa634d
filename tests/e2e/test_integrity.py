"""A corrupt run checkpoint is an exit-2 error naming the file, never NaN samples later
(issue 27, req. 2). Cache entries are discarded and rebuilt instead: tests/audit/pipeline/test_fitcache.py."""

from __future__ import annotations

import json

import pytest

from audit.cli.main import main

pytestmark = pytest.mark.slow
FAST = ["--set", "audit.anatomy=false", "--set", "audit.fidelity=false", "--set", "audit.utility=false"]


def _flip(path, offset=-7):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01  # one bit in the tensor data: the safetensors header still parses
    path.write_bytes(bytes(data))


def test_resume_refuses_a_corrupt_generator_or_checkpoint_naming_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(out), "--no-cache", *FAST]) == 0
    capsys.readouterr()

    # the trained generator of a finished fit stage: loaded by --resume
    weights = out / "generator" / (out / "generator" / "latest").read_text().strip() / "model.safetensors"
    _flip(weights)
    assert main(["--quiet", "run", "--out", str(out), "--resume", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(weights) in err and "sha256 mismatch" in err and "\n" not in err

    # a mid-training checkpoint: make the fit stage unfinished, so --resume continues from it
    state_path = out / "state.json"
    state = json.loads(state_path.read_text())
    state["stages"] = {"cohort": state["stages"]["cohort"]}
    state["status"] = "failed"
    state_path.write_text(json.dumps(state))
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    _flip(latest / "state.safetensors")
    assert main(["--quiet", "run", "--out", str(out), "--resume", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(latest / "state.safetensors") in err and "sha256 mismatch" in err
