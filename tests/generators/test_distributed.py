"""Data-parallel training under torchrun: 2 CPU processes with the gloo backend.

Exact checks: the weighted gradient average, identical weights on every rank after training,
rank-0-only checkpoints. Statistical check: the 2-process loss trajectory matches single-process
training (same global batches; the ranks draw their own noise, see generators/distributed.py).
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    from pathlib import Path
    import numpy as np, torch
    sys.path[:0] = [{root!r}, {here!r}]
    from conftest import ring_slices
    from audit.pipeline.config import resolve_config
    from generators import distributed
    from generators.base import FitContext
    from generators.registry import discover

    out = Path(sys.argv[1]); name = sys.argv[2]; steps = int(sys.argv[3])
    group = distributed.init_from_env()
    rank = group.rank if group else 0
    torch.set_num_threads(1)
    res = {{}}
    if group is not None:  # the weighted average, exactly
        p = torch.nn.Parameter(torch.zeros(3))
        opt = distributed.DataParallelOptimizer(torch.optim.SGD([p], lr=1.0))
        p.grad = torch.full((3,), float(rank + 1))
        opt.share = [0.25, 0.75][rank]
        opt.synchronize()
        res["averaged_grad"] = p.grad.tolist()
    entry = discover()[name]
    cfg = resolve_config(preset="smoke", generator=name, generator_preset=entry.presets.get("smoke", {{}}),
                         overrides={{"train.steps": steps, "train.batch_size": 8, "train.checkpoint_every": 5,
                                    "train.num_threads": 1}})
    g = entry.cls()
    g.fit(ring_slices(), cfg, FitContext(checkpoint_root=out / f"ckpt{{rank}}", losses_path=out / f"losses{{rank}}.csv"))
    h = hashlib.sha256()
    for k, v in sorted(g.nets.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())
    res["weights"] = h.hexdigest()
    (out / f"result{{rank}}.json").write_text(json.dumps(res))
''')


def _run(tmp_path: Path, name: str, steps: int, nproc: int) -> Path:
    out = tmp_path / f"{name}-{nproc}"
    out.mkdir()
    script = out / "train.py"
    script.write_text(SCRIPT.format(root=str(ROOT), here=str(Path(__file__).parent)))
    if nproc == 1:
        cmd = [sys.executable, str(script), str(out), name, str(steps)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               str(script), str(out), name, str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"CI": "true", "PATH": "/usr/bin:/bin",
                                                                                 "CMR_AUDIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _losses(path: Path) -> np.ndarray:
    import csv

    with open(path) as fh:
        return np.array([float(r["loss"]) for r in csv.DictReader(fh)])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ddpm", "ldm"])
def test_two_gloo_processes_match_single_process(tmp_path, name):
    steps = 30
    one = _run(tmp_path, name, steps, 1)
    two = _run(tmp_path, name, steps, 2)
    r0, r1 = (json.loads((two / f"result{r}.json").read_text()) for r in (0, 1))
    assert r0["averaged_grad"] == r1["averaged_grad"] == [1.75] * 3
    assert r0["weights"] == r1["weights"]  # every rank holds the same model
    assert (two / "ckpt0" / "latest").is_file() and not (two / "ckpt1").exists()  # rank-0-only I/O
    assert not (two / "losses1.csv").exists()
    single, dist = _losses(one / "losses0.csv"), _losses(two / "losses0.csv")
    assert len(single) == len(dist) == steps
    # same global batches and updates in expectation: the trajectories agree within the noise
    for a, b in ((single[:10], dist[:10]), (single[-10:], dist[-10:])):
        assert abs(a.mean() - b.mean()) <= 0.15 * a.mean(), (a.mean(), b.mean())
    assert dist[-10:].mean() < dist[:3].mean()  # and it learns
