"""Cold vs warm load of a prepared cohort (``cohorts.cache.load_prepared``).

Cold: empty cache (no digest memo, no entry): hash every input byte, read and decode every
NIfTI file, preprocess, write the cache entry. Warm: scan the text files, data hash from the
digest memo, read ``arrays.npz``. Uses the built-in phantom when ``cohorts.phantom`` has
``write_dataset``; otherwise (or with ``--source synthetic``) a synthetic ACDC-layout dataset
of realistic size (int16 cine, 224 x 256 x 10 slices x 25 frames, 1.25-1.8 mm in-plane).

Example::

    python benchmarks/cohort_cache.py --subjects 10
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _write_synthetic(root: Path, n: int, seed: int) -> None:
    import nibabel as nib

    rng = np.random.default_rng(seed)
    x, y, z, t = 224, 256, 10, 25
    xx, yy = np.meshgrid(np.arange(x), np.arange(y), indexing="ij")
    for i in range(n):
        sid = f"patient{i + 1:03d}"
        p = root / "training" / sid
        p.mkdir(parents=True)
        s = float(rng.uniform(1.25, 1.8))
        aff = np.diag([s, s, 10.0, 1.0])
        cx, cy = x / 2 + rng.uniform(-15, 15), y / 2 + rng.uniform(-15, 15)
        d = np.hypot(xx - cx, yy - cy)
        mask = np.zeros((x, y, z, t), np.uint8)
        for f in range(t):
            r = 18 * (1 - 0.3 * np.sin(np.pi * f / (t - 1)))
            m = np.zeros((x, y), np.uint8)
            m[np.hypot(xx - cx, yy - cy + 28) < 14] = 1
            m[d < r + 8] = 2
            m[d < r] = 3
            mask[:, :, :, f] = m[..., None]
        img = (np.choose(mask, [150, 600, 300, 700]) + rng.normal(0, 40, mask.shape)).clip(0, 4000).astype(np.int16)
        nib.save(nib.Nifti1Image(img, aff), str(p / f"{sid}_4d.nii.gz"))
        nib.save(nib.Nifti1Image(mask, aff), str(p / f"{sid}_4d_gt.nii.gz"))
        (p / "Info.cfg").write_text(f"ED: 1\nES: 10\nGroup: NOR\nHeight: 175\nNbFrame: {t}\nWeight: 75\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=10)
    ap.add_argument("--source", choices=("auto", "phantom", "synthetic"), default="auto")
    ap.add_argument("--layout", choices=("acdc", "mnms"), default="acdc")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cohort_cache.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    source = args.source
    if source in ("auto", "phantom"):
        try:
            from cohorts.phantom import write_dataset  # type: ignore[attr-defined]
        except ImportError:
            if source == "phantom":
                raise
            source = "synthetic"
        else:
            source = "phantom"

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        os.environ["CMR_AUDIT_CACHE"] = str(tmp_path / "cache")
        from cohorts.cache import cache_key, entry_dir, load_prepared
        from cohorts.preprocess import PreprocessConfig

        data = tmp_path / "data"
        t0 = time.perf_counter()
        if source == "phantom":
            write_dataset(data, args.subjects, args.seed, layout=args.layout)
            layout = args.layout
        else:
            _write_synthetic(data, args.subjects, args.seed)
            layout = "acdc"
        t_write = time.perf_counter() - t0
        data_bytes = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        cfg = PreprocessConfig()

        t0 = time.perf_counter()
        cold = load_prepared(data, cfg, progress=False)
        t_cold = time.perf_counter() - t0
        warm_times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            warm = load_prepared(data, cfg, progress=False)
            warm_times.append(time.perf_counter() - t0)
        assert warm.ids == cold.ids and all(np.array_equal(a.image, b.image) for a, b in zip(cold, warm))
        entry = entry_dir(cache_key(cold.data_hash, cfg))
        entry_bytes = sum(p.stat().st_size for p in entry.iterdir())
        t_warm = statistics.median(warm_times)
        n_slices = sum(s.n_frames * s.n_slices for s in cold)

    result = {
        "benchmark": "cohort_cache",
        "date": dt.date.today().isoformat(),
        "command": "python benchmarks/cohort_cache.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "source": source,
        "layout": layout,
        "subjects": args.subjects,
        "frames_x_slices": n_slices,
        "dataset_mb": round(data_bytes / 1e6, 1),
        "cache_entry_mb": round(entry_bytes / 1e6, 1),
        "config": cfg.to_dict(),
        "write_dataset_s": round(t_write, 2),
        "cold_s": round(t_cold, 3),
        "warm_s_median": round(t_warm, 3),
        "warm_s_all": [round(v, 3) for v in warm_times],
        "speedup": round(t_cold / t_warm, 1),
    }
    from audit.core.atomic import atomic_write_json

    atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
