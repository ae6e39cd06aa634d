"""``torchrun --nproc_per_node 2 -m audit run``: two gloo ranks train, rank 0 alone writes the run."""

import json
import os
import subprocess
import sys

import pytest

from audit.core.results import load_results


@pytest.mark.slow
def test_audit_run_under_torchrun(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "CI": "true", "CMR_AUDIT_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "audit",
           "--quiet", "run", "--generator", "ddpm", "--preset", "smoke", "--out", str(out), "--set", "audit.utility=false",
           "--set", "audit.privacy=false", "--set", "train.num_threads=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines() == [str(out)]  # printed by rank 0 only
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "finished" and state["stages"]["fit"]["train_slices"] > 0
    assert "anatomy" in load_results(out / "results.json")
    losses = (out / "losses.csv").read_text().splitlines()
    assert len(losses) == 1 + 20  # header + every step, logged once (rank 0, rank-averaged)
    assert (out / "generator" / "latest").is_file() or (out / "generator" / "config.json").is_file()
