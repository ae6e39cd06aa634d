"""Wall time of the CI generator matrix: ``tox -m generators`` then ``tox -e compare`` (issue 13).

Usage (record the result in BENCHMARKS.md, "## tox generator matrix"):

    python benchmarks/tox_matrix.py            # fresh clone of HEAD, fresh tox work dir and cache

It clones the repository's HEAD into a temporary directory (so the measurement is what CI sees:
no build outputs, no warm caches), runs the two tox commands there with ``CMR_AUDIT_CACHE`` unset
(each env then uses ``.tox/cache``: the phantom, the judge and the shared autoencoder are built
once and reused by the later envs), and reads tox's own per-env summary (``audit-gan: OK
(12.3=setup[..]+cmd[..] seconds)``). The first env's setup includes creating the one shared
environment (torch from the local wheel, the package in editable mode). Output:
``benchmarks/results/tox_matrix.json`` with the total, each env's time and its exit status.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402

log = logging.getLogger("tox_matrix")
SUMMARY = re.compile(r"^\s*([\w.-]+): (OK|FAIL|SKIP)[^(]*\(([\d.]+)(?:=setup\[([\d.]+)\]\+cmd\[([\d.,+]+)\])? seconds\)")


def parse_summary(text: str) -> dict[str, dict]:
    """tox 4's closing lines -> ``{env: {status, seconds, setup_s, cmd_s}}``."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        m = SUMMARY.match(line)
        if m:
            env, status, total, setup, cmd = m.groups()
            out[env] = {"status": status, "seconds": float(total), "setup_s": float(setup) if setup else None,
                        "cmd_s": round(sum(float(c) for c in re.split(r"[,+]", cmd)), 2) if cmd else None}
    return out


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        log.error("%s failed (exit %d); last lines:\n%s", " ".join(cmd), proc.returncode, "\n".join(text.splitlines()[-20:]))
    return wall, proc.returncode, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tox_matrix.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary clone (run dirs, compare.html)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tox = shutil.which("tox")
    if tox is None:
        raise SystemExit("tox is not installed: pip install 'tox>=4.11'")
    work = Path(tempfile.mkdtemp(prefix="tox-matrix-"))
    clone = work / "repo"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("CMR_AUDIT_CACHE", "VIRTUAL_ENV")}
    env["CI"] = "true"
    steps = {}
    for name, cmd in (("generators", [tox, "-m", "generators"]), ("compare", [tox, "-e", "compare"])):
        log.info("running %s in %s", " ".join(cmd[1:]), clone)
        wall, rc, text = run(cmd, clone, env)
        steps[name] = {"command": "tox " + " ".join(cmd[1:]), "wall_s": round(wall, 1), "exit": rc, "envs": parse_summary(text)}
        log.info("%s: %.0f s, exit %d, envs %s", name, wall, rc, steps[name]["envs"])
    doc = {
        "benchmark": "tox_matrix", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit, "command": "python benchmarks/tox_matrix.py",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_avg_1m": os.getloadavg()[0]},
        "steps": steps, "total_wall_s": round(sum(s["wall_s"] for s in steps.values()), 1),
        "all_ok": all(s["exit"] == 0 for s in steps.values()),
    }
    atomic_write_json(args.out, doc)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log.info("kept %s", work)
    print(json.dumps({k: doc[k] for k in ("total_wall_s", "all_ok")}))
    return 0 if doc["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
