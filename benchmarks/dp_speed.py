"""DP-SGD cost: seconds per training step with and without DP, same model and batch (issue 7, req. 5).

Usage (record the result in BENCHMARKS.md, "## Differential privacy"):

    python benchmarks/dp_speed.py                      # every family at its quick preset, ~5 min on 2 cores
    python benchmarks/dp_speed.py --families ldm --steps 4
    python benchmarks/dp_speed.py --families cine --out benchmarks/results/dp_speed_cine.json
    python benchmarks/dp_speed.py --device cuda --preset full   # on a lent GPU, the GPU-sized networks

For each family the quick preset's networks are built at the quick image size and the family's
real ``train_step`` runs on a fixed random batch of the preset's batch size: once plainly, once
with the networks made private exactly as a DP fit makes them (Opacus GradSampleModule in
``hooks`` mode, per-subject aggregation with 2 slices per subject, clipping, noise). Latent
families are timed on random latents of the autoencoder's shape (the denoiser phase), and the
autoencoder phase is timed on its own. Median over ``--steps`` steps after 2 warm-up steps
(CUDA synchronised). Both timings are fp32, as DP training runs (:mod:`generators.device`); on
CUDA the non-private step is also timed under bf16 autocast (``plain_amp_s_per_step``), the way
a non-DP GPU run trains. Goal: DP step time <= 3x the non-private one. Output: ``benchmarks/results/dp_speed.json``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from audit.core.atomic import atomic_write_json  # noqa: E402
from audit.core.cpus import usable_cores  # noqa: E402

log = logging.getLogger("dp_speed")
GOAL = 3.0


def _plan(mode: str):
    from generators.dp.plan import DPPlan

    return DPPlan(unit="subject", n_units=1000, slices_per_unit=2, delta=1e-5, max_grad_norm=1.0, accountant="rdp",
                  mode=mode, noise_multiplier=1.0, target_epsilon=None,
                  phases=[{"name": n, "sample_rate": 0.01, "steps": 1, "releases": r}
                          for n, r in (("train", 2), ("autoencoder", 1))])


DEVICE = "cpu"


def _sync() -> None:
    import torch

    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def _family(name: str, preset: str = "quick", dp: bool = False):
    import torch

    from audit.pipeline.config import resolve_config
    from generators.conditioning import Vocab
    from generators.registry import discover

    entry = discover()[name]
    cfg = resolve_config(preset=preset, generator=name, generator_preset=entry.presets.get(preset, {}))
    g = entry.cls()
    g._set_options(cfg.generator_options or {})
    if dp:
        g.dp_adjust_options()  # as a DP fit does (the gan drops spectral norm)
    size = cfg.data.size
    g.shape, g.spacing = (size, size), np.array([1.5, 1.5], np.float32)
    g.vocab = Vocab.from_data(np.array(list("ABC")), np.array(["NOR", "DCM", "HCM"]))
    if getattr(g, "latent", False):
        from generators.autoencoder import LatentAutoencoder

        g.ae = LatentAutoencoder(g.options["ae"], g.shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g.build(train=True)
    g.to(DEVICE)
    return g, cfg


def _batch(g, bs: int):
    import torch

    gen = torch.Generator().manual_seed(0)
    h, w = g.shape
    batch = {"image": torch.rand(bs, 1, h, w, generator=gen), "mask": torch.randint(0, 4, (bs, h, w), generator=gen).to(torch.uint8),
             "labelled": torch.ones(bs, dtype=torch.bool), "vendor": torch.randint(0, 3, (bs,), generator=gen),
             "group": torch.randint(0, 3, (bs,), generator=gen)}
    if getattr(g, "latent", False):
        batch["data"] = torch.randn(bs, *g.ae.latent_shape, generator=gen)
    return {k: v.to(DEVICE) for k, v in batch.items()}


def _time(fn, steps: int) -> float:
    for _ in range(2):
        fn()
    _sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _private(g, phase: str, modules, optimizers, bs: int, mode: str):
    import torch

    from generators.dp.accountant import Ledger
    from generators.dp.sgd import PrivateTraining

    plan = _plan(mode)
    private = PrivateTraining(plan, Ledger(1e-5), phase, np.arange(2000) // 2, seed=0)
    opts = private.wrap(modules, optimizers, "benchmark")
    owner = torch.arange(bs, device=DEVICE) // 2
    for o in opts.values():
        o.owner, o.n_units_in_batch = owner, int(owner.max()) + 1
    return plan, private, opts


def measure_family(name: str, steps: int, mode: str, preset: str = "quick") -> list[dict]:
    import torch

    from generators.device import autocast

    g, cfg = _family(name, preset)
    bs = int(cfg.train.batch_size)
    batch = _batch(g, bs)
    rng = np.random.default_rng(0)
    plain = _time(lambda: g.train_step(batch, 0, rng), steps)
    amp = None
    if DEVICE.startswith("cuda"):
        def amp_step():
            with autocast(torch.device(DEVICE)):
                g.train_step(batch, 0, rng)

        amp = _time(amp_step, steps)
    g, cfg = _family(name, preset, dp=True)
    g.dp_plan, private, g.optimizers = _private(g, "train", g._optimizer_modules(), g.optimizers, bs, mode)
    g._private = private
    dp = _time(lambda: g.train_step(batch, 0, rng), steps)
    private.close()
    n_params = sum(p.numel() for p in g.nets.parameters())
    row = {"family": name, "phase": "denoiser" if getattr(g, "latent", False) else "train", "batch": bs,
           "image_size": g.shape[0], "params_M": round(n_params / 1e6, 3), "plain_s_per_step": round(plain, 4),
           "dp_s_per_step": round(dp, 4), "slowdown": round(dp / plain, 2), "plain_img_s": round(bs / plain, 1),
           "dp_img_s": round(bs / dp, 1), "mode": mode, "device": DEVICE, "preset": preset}
    if amp is not None:
        row.update(plain_amp_s_per_step=round(amp, 4), slowdown_vs_amp=round(dp / amp, 2))
    log.info("%s", row)
    out = [row]
    if getattr(g, "latent", False) and name == "ldm":
        out.append(measure_autoencoder(g, steps, mode, preset))
    return out


def measure_autoencoder(g, steps: int, mode: str, preset: str = "quick") -> dict:
    import torch
    import torch.nn.functional as F

    from generators.autoencoder import _net

    o = g.options["ae"]  # resolved when the generator was built
    bs = int(o["batch_size"])
    x = torch.rand(bs, 1, *g.shape, generator=torch.Generator().manual_seed(0)).to(DEVICE)

    def make():
        torch.manual_seed(0)
        net = _net(o).to(DEVICE)
        return net, torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step(net, opt):
        recon, mu, sigma = net(x)
        loss = F.l1_loss(recon, x) + 1e-6 * (mu.pow(2) + sigma.pow(2)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net, opt = make()
    plain = _time(lambda: step(net, opt), steps)
    net, opt = make()
    _, private, opts = _private(None, "autoencoder", {"ae": net}, {"ae": opt}, bs, mode)
    dp = _time(lambda: step(net, opts["ae"]), steps)
    private.close()
    row = {"family": "ldm/flow", "phase": "autoencoder", "batch": bs, "image_size": g.shape[0],
           "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 3), "plain_s_per_step": round(plain, 4),
           "dp_s_per_step": round(dp, 4), "slowdown": round(dp / plain, 2), "plain_img_s": round(bs / plain, 1),
           "dp_img_s": round(bs / dp, 1), "mode": mode, "device": DEVICE, "preset": preset}
    log.info("%s", row)
    return row


def measure_cine(steps: int, mode: str, preset: str = "quick", n_slices: int = 10) -> list[dict]:
    """The three private training phases of ``cine`` (joint VAE, static LDM, motion LDM), each with
    the generator's own loss (``joint_loss`` / ``ldm_loss`` in their per-sample DP form for both
    timings, so the comparison isolates Opacus), on random data of the preset's shapes; the
    static stack has ``n_slices`` slices (the phantom's 8-11)."""
    import torch

    from audit.pipeline.config import resolve_config
    from generators.autoencoder import LatentAutoencoder
    from generators.cine import CineGenerator
    from generators.cine_ldm import build_unet, ldm_loss
    from generators.cine_vae import DualDecoderVAE
    from generators.diffusion import T_TRAIN
    from generators.registry import discover
    from monai.networks.schedulers import DDPMScheduler

    entry = discover()["cine"]
    cfg = resolve_config(preset=preset, generator="cine", generator_preset=entry.presets.get(preset, {}))
    g = CineGenerator()
    g._set_options(cfg.generator_options or {})
    o, size, T = g.options, int(cfg.data.size), int(g.options["frames"])
    g.groups = ("DCM", "HCM", "NOR")
    gen = torch.Generator().manual_seed(0)
    sched = DDPMScheduler(num_train_timesteps=T_TRAIN, schedule=o["schedule"], prediction_type=o["prediction"])
    c, h, w = LatentAutoencoder(o["ae"], (size, size)).latent_shape

    def vae_case():
        torch.manual_seed(0)
        vae = DualDecoderVAE(LatentAutoencoder(o["ae"], (size, size)).to(DEVICE))
        bs = int(o["vae_batch_size"])
        x = torch.rand(bs, 1, size, size, generator=gen).to(DEVICE)
        y = torch.randint(0, 4, (bs, size, size), generator=gen).to(DEVICE)
        lab = (torch.arange(bs) % 8 < 2).to(DEVICE)  # ED and ES annotated: 2 frames in 8
        net = torch.nn.ModuleDict({"ae": vae.ae.net, "seg": vae.seg})
        return net, bs, lambda: vae.joint_loss(x, y, lab, seg_weight=1.0, per_sample=True, amp=False)[0]

    def ldm_case(name: str):
        torch.manual_seed(0)
        if name == "static":
            bs, in_ch, out_ch, extra_ch, n_pri = int(o["static_batch_size"]), n_slices * c, n_slices * c, 0, g.n_priors
        else:
            bs, in_ch, out_ch, extra_ch, n_pri = int(o["motion_batch_size"]), (T - 1) * c, (T - 1) * c, c, g.n_priors + 1
        net = build_unet(in_ch + extra_ch, out_ch, n_pri, o).to(DEVICE)
        x0 = torch.randn(bs, in_ch, h, w, generator=gen).to(DEVICE)
        extra = torch.randn(bs, extra_ch, h, w, generator=gen).to(DEVICE) if extra_ch else None
        prior = torch.rand(bs, n_pri, generator=gen).to(DEVICE)
        weight = torch.ones(bs, in_ch, 1, 1, device=DEVICE) if name == "static" else None
        return net, bs, lambda: ldm_loss(net, sched, x0, extra, prior, weight, prediction=o["prediction"],
                                         per_sample=True, amp=False)

    rows = []
    for phase, make in (("vae", vae_case), ("static", lambda: ldm_case("static")), ("motion", lambda: ldm_case("motion"))):
        timings = {}
        for private_run in (False, True):
            net, bs, loss_fn = make()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            private = None
            if private_run:
                _, private, opts = _private(None, "autoencoder", {phase: net}, {phase: opt}, bs, mode)
                opt = opts[phase]
                if phase == "static":  # one stack per subject: every row its own unit
                    owner = torch.arange(bs, device=DEVICE)
                    opt.owner, opt.n_units_in_batch = owner, bs

            def step(loss_fn=loss_fn, opt=opt):
                loss = loss_fn()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            timings[private_run] = _time(step, steps)
            if private is not None:
                private.close()
        plain, dp = timings[False], timings[True]
        what = {"vae": f"joint VAE (encoder + image and seg decoders, {size}x{size})",
                "static": f"static LDM ({n_slices} slices x {c} latent channels, {h}x{w})",
                "motion": f"motion LDM ({T - 1} frames x {c} channels + static, {h}x{w})"}[phase]
        row = {"family": "cine", "phase": what, "batch": bs, "image_size": size,
               "params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 3), "plain_s_per_step": round(plain, 4),
               "dp_s_per_step": round(dp, 4), "slowdown": round(dp / plain, 2), "plain_img_s": round(bs / plain, 1),
               "dp_img_s": round(bs / dp, 1), "mode": mode, "device": DEVICE, "preset": preset}
        log.info("%s", row)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["gan", "vae", "ddpm", "ldm", "flow", "cine"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--mode", default="hooks", choices=["hooks", "functorch"])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--preset", default="quick", choices=["quick", "full"], help="whose network sizes and batch")
    ap.add_argument("--compare", action="store_true", help="print ratios against the last recorded result (git HEAD)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dp_speed.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from generators.device import resolve

    global DEVICE
    DEVICE = str(resolve(args.device))
    torch.set_num_threads(usable_cores())
    rows = []
    for name in args.families:
        rows.extend(measure_cine(args.steps, args.mode, args.preset) if name == "cine"
                    else measure_family(name, args.steps, args.mode, args.preset))
    doc = {
        "benchmark": "dp_speed", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "load_avg_1m": os.getloadavg()[0],
                    "gpu": torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else None},
        "command": "python benchmarks/dp_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "goal_slowdown": GOAL, "rows": rows,
        "all_within_goal": all(r["slowdown"] <= GOAL for r in rows),
    }
    if args.compare:
        from runkit import compare_with_recorded  # benchmarks/runkit.py; this directory is sys.path[0]

        print("\n".join(compare_with_recorded(doc, args.out)))
    atomic_write_json(args.out, doc)
    for r in rows:
        print(f"{r['family']:9s} {r['phase']:12s} batch {r['batch']:3d} {r['image_size']}px {r['params_M']:.2f}M  "
              f"plain {r['plain_s_per_step']:.3f} s  DP {r['dp_s_per_step']:.3f} s  x{r['slowdown']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
