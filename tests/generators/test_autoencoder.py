"""The shared latent autoencoder's optional adversarial term (generators.autoencoder)."""

import math

import numpy as np
import pytest

from audit.core.errors import UserError
from generators.autoencoder import LatentAutoencoder, cache_key

SMALL = {"channels": [8, 8], "norm_groups": 4, "steps": 6, "batch_size": 4}
ADV = {**SMALL, "adv_weight": 0.1, "fm_weight": 1.0, "adv_start": 3, "disc_channels": [8, 8]}


def _images(n=12, size=16):
    return np.random.default_rng(0).random((n, size, size), dtype=np.float32)


def test_adversarial_term_starts_at_adv_start_and_changes_the_autoencoder():
    images = _images()
    ae = LatentAutoencoder(ADV, (16, 16))
    history = ae.fit(images, seed=0)
    assert len(history) == 6
    for row in history[:3]:  # before adv_start the discriminator is idle
        assert not {"adv", "fm", "disc"} & set(row)
    for row in history[3:]:
        assert all(math.isfinite(row[k]) for k in ("adv", "fm", "disc"))
    plain = LatentAutoencoder(SMALL, (16, 16))
    plain.fit(images, seed=0)
    assert not np.allclose(ae.reconstruct(images), plain.reconstruct(images))


def test_adversarial_autoencoder_is_refused_under_dp():
    with pytest.raises(UserError, match="discriminator on the private images"):
        LatentAutoencoder(ADV, (16, 16)).fit(_images(), seed=0, dp=(None, None, None))


def test_inert_adversarial_options_do_not_split_the_cache():
    images = _images()
    base = cache_key(images, SMALL, 0)
    assert cache_key(images, {**SMALL, "adv_start": 50, "disc_lr": 1e-3}, 0) == base
    assert cache_key(images, ADV, 0) != base


def test_cache_key_names_a_bf16_training_precision(monkeypatch):
    from generators import device as devices

    images = _images()
    monkeypatch.setattr(devices, "_cpu_bf16", lambda: False)
    fp32 = cache_key(images, SMALL, 0)
    assert cache_key(images, SMALL, 0, amp=False) == fp32  # a CPU without native bf16: keys as before
    monkeypatch.setattr(devices, "_cpu_bf16", lambda: True)
    assert cache_key(images, SMALL, 0) != fp32  # trained under bf16 autocast: another network
    assert cache_key(images, SMALL, 0, amp=False) == fp32
    assert cache_key(images, SMALL, 0, dp={"plan": {}}) == cache_key(images, SMALL, 0, dp={"plan": {}}, amp=False)


def test_a_corrupt_cache_entry_is_discarded_and_retrained(tmp_path, monkeypatch, caplog):
    from generators.autoencoder import shared_autoencoder

    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path))
    images = _images()
    first = shared_autoencoder(images, SMALL, 0)
    entry = next((tmp_path / "autoencoders").iterdir())
    weights = next(entry.rglob("model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last weight
    weights.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="generators.autoencoder"):
        again = shared_autoencoder(images, SMALL, 0)
    assert any("unusable" in r.getMessage() and "sha256 mismatch" in r.getMessage() for r in caplog.records)
    assert np.array_equal(again.reconstruct(images), first.reconstruct(images))  # retrained, same seed
    assert shared_autoencoder(images, SMALL, 0) is not None  # and the rebuilt entry now loads
