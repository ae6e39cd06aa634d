import json

import pytest
import torch

from audit.core.errors import UserError
from generators import checkpoint as ckpt
from generators.training import EMA, Trainer, TrainSpec


def _make(tmp_path, steps=12, every=4, seed=0, keep=2):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    spec = TrainSpec("toy", {"width": 8}, steps, seed, tmp_path / "ckpt", every, tmp_path / "losses.csv",
                     keep_checkpoints=keep)
    trainer = Trainer(spec, {"net": model}, {"net": opt}, {"net": EMA(model, 0.9, warmup=2)})
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    y = x.sum(1, keepdim=True)

    def step(t, rng):
        idx = torch.as_tensor(rng.choice(64, 16, replace=False))
        loss = ((model(x[idx] + 0.01 * torch.randn(16, 4)) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    return trainer, step


def test_keep_checkpoints(tmp_path):
    for keep, expected in ((2, ["step-000008", "step-000012"]), (0, ["step-000004", "step-000008", "step-000012"])):
        trainer, step = _make(tmp_path / str(keep), keep=keep)
        trainer.fit(step)
        assert sorted(p.name for p in (tmp_path / str(keep) / "ckpt").glob("step-*")) == expected


def test_resume_equals_uninterrupted(tmp_path):
    a, step_a = _make(tmp_path / "a")
    a.fit(step_a)
    b, step_b = _make(tmp_path / "b")
    b.fit(step_b, stop_after=6)  # "crash" after 6 steps; checkpoint at 4
    c, step_c = _make(tmp_path / "b")  # a fresh process: new objects, same directory
    c.fit(step_c, resume=True)
    assert c.step == a.step == 12
    for k, v in a.weights().items():
        torch.testing.assert_close(c.weights()[k], v, rtol=0, atol=0)
    assert [r["loss"] for r in c.history] == pytest.approx([r["loss"] for r in a.history])
    assert (tmp_path / "b" / "losses.csv").read_text().count("\n") == 13


def test_checkpoint_layout_and_pointer(tmp_path):
    t, step = _make(tmp_path)
    t.fit(step)
    root = tmp_path / "ckpt"
    assert (root / "latest").read_text().strip() == "step-000012"
    files = {p.name for p in (root / "step-000012").iterdir()}
    assert files == {"config.json", "model.safetensors", "state.safetensors", "state.json"}
    assert len(list(root.glob("step-*"))) == 2  # keep=2
    assert not list(root.glob(".step-*"))  # no staging leftovers


def test_incompatible_and_corrupted_checkpoints(tmp_path):
    t, step = _make(tmp_path)
    t.fit(step)
    root = tmp_path / "ckpt"
    with pytest.raises(UserError, match="generator 'toy', not 'gan'"):
        ckpt.load(root, generator="gan")
    with pytest.raises(UserError, match="model config differs in width"):
        ckpt.load(root, generator="toy", model_config={"width": 16})
    weights = root / "step-000012" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="model.safetensors: sha256 mismatch"):
        ckpt.load(root, generator="toy")
    # no digests (an old checkpoint, or the digests removed to hide the flip): refused, not trusted
    cfg_path = root / "step-000012" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["sha256"]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="config.json: no sha256 digests, so the checkpoint cannot be verified"):
        ckpt.load(root, generator="toy")
    with pytest.raises(UserError, match="no checkpoint"):
        ckpt.load(tmp_path / "nothing")


@pytest.mark.parametrize("fname", ["model.safetensors", "state.safetensors", "state.json"])
def test_a_flipped_bit_in_any_checkpoint_file_is_caught_and_named(tmp_path, fname):
    """One flipped bit inside the tensor data loads fine as safetensors (no checksum of its own)
    and would surface only as wrong weights; the stored sha256 catches it and names the file."""
    t, step = _make(tmp_path)
    t.fit(step)
    root = tmp_path / "ckpt"
    ckpt.load(root, generator="toy")  # intact: loads
    f = root / "step-000012" / fname
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01  # inside the data, not the header
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"step-000012/{fname}: sha256 mismatch"):
        ckpt.load(root, generator="toy")


def test_interrupted_save_leaves_latest_intact(tmp_path, monkeypatch):
    t, step = _make(tmp_path, steps=8, every=4)
    t.fit(step, stop_after=4)
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step-000004"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OSError):
        t.fit(step)
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "step-000004"
    assert not list((tmp_path / "ckpt").glob(".step-*"))
    ckpt.load(tmp_path / "ckpt", generator="toy")  # still loadable


def test_ema_warmup_copies_then_averages():
    m = torch.nn.Linear(2, 1)
    ema = EMA(m, decay=0.99, warmup=3)
    assert ema.rate(0) == 0.0 and ema.rate(2) == 0.0
    assert ema.rate(3) == pytest.approx(0.1) and ema.rate(10_000) == 0.99
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update(m, 0)
    assert torch.equal(ema.shadow["weight"], m.weight)


def test_non_finite_loss_stops(tmp_path):
    t, _ = _make(tmp_path)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0"):
        t.fit(lambda s, r: {"loss": float("nan")})
