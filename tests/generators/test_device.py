"""``--device``: every family trains, samples, scores and round-trips its checkpoint on CUDA.

The CUDA tests skip on machines without a GPU (CI); ``benchmarks/gpu.sh`` runs them on a lent
GPU first. The CPU tests check the device plumbing that needs no GPU: resolution and errors,
moving a fitted generator, and that sampling noise comes from the seeded CPU generator.
"""

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from audit.pipeline.config import resolve_config
from audit.core.errors import UserError
from generators import device as devices
from generators.base import FitContext
from generators.registry import discover

FAMILIES = ["gan", "vae", "ddpm", "ldm", "flow"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cfg(name, device="cpu", **over):
    entry = discover()[name]
    overrides = {"train.steps": 6, "train.checkpoint_every": 3, "train.batch_size": 8, "device": device}
    overrides.update(over)
    return resolve_config(preset="smoke", generator=name, generator_preset=entry.presets.get("smoke", {}),
                          overrides=overrides), entry.cls


def _conditions(data, k=6):
    return {"masks": data.masks[:k], "vendor": data.vendor[:k], "group": data.group[:k]}


def test_resolve():
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.resolve(None) == torch.device("cpu")
    with pytest.raises(UserError, match="not supported"):
        devices.resolve("mps")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="sees no CUDA GPU"):
            devices.resolve("cuda")


def test_cpu_autocast_is_bf16_only_where_native():
    with devices.autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == (torch.bfloat16 if devices.bf16_native("cpu") else torch.float32)
    with devices.autocast(torch.device("cpu"), enabled=False):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_plain_avx512_is_not_native_bf16():
    # oneDNN's probe says yes for AVX-512 without AVX512-BF16 / AMX-BF16, where bf16 is emulated and slower
    x86 = {"architecture": "x86_64", "avx512_f": True, "avx512_bw": True, "avx512_bf16": False, "amx_bf16": False}
    assert not devices._x86_bf16_hardware(x86)
    assert devices._x86_bf16_hardware({**x86, "avx512_bf16": True})
    assert devices._x86_bf16_hardware({**x86, "amx_bf16": True})
    assert devices._x86_bf16_hardware({"architecture": "aarch64"})  # oneDNN's probe decides there


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file() or platform.machine() != "x86_64", reason="reads Linux x86 flags")
def test_cpu_bf16_matches_the_kernels_cpu_flags():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    hardware = bool(flags & {"avx512_bf16", "amx_bf16"})
    assert devices.bf16_native("cpu") == (hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_run_asking_for_cuda_fails_before_any_work(tmp_path):
    from audit.pipeline.run import RunRequest, prepare

    with pytest.raises(UserError, match="sees no CUDA GPU"):
        prepare(RunRequest(generator="ldm", preset="smoke", out=tmp_path / "run", overrides={"device": "cuda"}))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["gan", "ldm"])
def test_moved_generator_samples_the_same(name, rings, tmp_path):
    """``to(device)`` after load; a seed means the same images (CPU here, on CUDA in the GPU tests)."""
    cfg, cls = _cfg(name)
    g = cls()
    g.fit(rings, cfg)
    a = g.sample(conditions=_conditions(rings), seed=5).images
    g.save(tmp_path / "gen")
    b = cls.load(tmp_path / "gen").to("cpu").sample(conditions=_conditions(rings), seed=5).images
    np.testing.assert_array_equal(a, b)


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_fit_sample_score_roundtrip(name, rings, tmp_path):
    cfg, cls = _cfg(name, "cuda")
    g = cls()
    g.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "ckpt", losses_path=tmp_path / "losses.csv"))
    assert all(p.is_cuda for p in g.nets.parameters())
    a = g.sample(conditions=_conditions(rings), seed=3)
    assert a.images.dtype == np.float32 and np.isfinite(a.images).all()
    np.testing.assert_allclose(a.images, g.sample(conditions=_conditions(rings), seed=3).images, atol=1e-5)
    s = g.score(rings.images[:6], rings.masks[:6])
    assert s.shape == (6,) and np.isfinite(s).all()
    g.save(tmp_path / "gen")
    on_gpu = cls.load(tmp_path / "gen").to("cuda").sample(conditions=_conditions(rings), seed=3).images
    np.testing.assert_allclose(on_gpu, a.images, atol=1e-3)
    on_cpu = cls.load(tmp_path / "gen").sample(conditions=_conditions(rings), seed=3).images
    # same weights and noise; bf16 autocast on the GPU vs fp32 on the CPU
    assert np.abs(on_cpu - a.images).mean() < 0.05


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["ddpm", "ldm", "flow"])
def test_cuda_sdedit_and_pia(name, rings):
    cfg, cls = _cfg(name, "cuda")
    g = cls()
    g.fit(rings, cfg)
    out = g.sdedit(rings.images[:4], rings.masks[:4], strength=0.5, seed=1)
    assert out.shape == rings.images[:4].shape and np.isfinite(out).all()
    assert np.isfinite(g.pia_score(rings.images[:4], rings.masks[:4])).all()


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["gan", "ldm"])
def test_cuda_dp_fit(name, rings):
    cfg, cls = _cfg(name, "cuda", **{"dp.noise_multiplier": 1.0, "dp.delta": 1e-3})
    g = cls()
    g.fit(rings, cfg)
    assert g.dp_summary is not None and g.dp_summary["epsilon_rdp"] > 0
    assert np.isfinite(g.sample(conditions=_conditions(rings), seed=0).images).all()


@cuda
@pytest.mark.gpu
def test_cuda_resume_equals_uninterrupted(rings, tmp_path):
    cfg, cls = _cfg("ddpm", "cuda")
    full = cls()
    full.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "a"))
    part = cls()
    part.fit(rings, _cfg("ddpm", "cuda", **{"train.steps": 3})[0], FitContext(checkpoint_root=tmp_path / "b"))
    resumed = cls()
    resumed.fit(rings, cfg, FitContext(checkpoint_root=tmp_path / "b", resume=True))
    a = full.sample(conditions=_conditions(rings), seed=1).images
    b = resumed.sample(conditions=_conditions(rings), seed=1).images
    np.testing.assert_allclose(a, b, atol=1e-4)
