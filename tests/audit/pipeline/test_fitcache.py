"""The fit cache (issue 13, req. 4): a re-audit with other audit settings reuses the trained
generator; a change to anything that shapes the weights, or --no-cache, retrains."""

from __future__ import annotations

import json

import pytest

from audit.pipeline import config as C
from audit.pipeline import fitcache
from audit.cli.main import main
from generators.sampleset import SampleSet

pytestmark = pytest.mark.slow
FAST = ["--set", "audit.anatomy=false", "--set", "audit.fidelity=false", "--set", "audit.utility=false"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CMR_AUDIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _fit_info(run):
    return json.loads((run / "state.json").read_text())["stages"]["fit"]


def test_reaudit_reuses_the_trained_generator(tmp_path, cache):
    a, b, c, d = (tmp_path / x for x in "abcd")
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(a), *FAST]) == 0
    assert _fit_info(a)["fit_cache"] == "stored"
    # another audit setting (privacy bootstrap) and sample count: same model, from the cache
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(b), *FAST,
                 "--set", "audit.bootstrap=50", "--set", "sample.n_samples=12"]) == 0
    info = _fit_info(b)
    assert info["fit_cache"] == "hit" and info["fit_cache_key"] == _fit_info(a)["fit_cache_key"]
    assert (b / "losses.csv").read_text() == (a / "losses.csv").read_text()
    wa = sorted((a / "generator").rglob("*.safetensors"))
    wb = sorted((b / "generator").rglob("*.safetensors"))
    assert wa and [p.read_bytes() for p in wa] == [p.read_bytes() for p in wb]
    assert len(SampleSet.load(b / "samples.npz")) == 12
    # a training setting changes the key; --no-cache neither reads nor writes
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(c), *FAST,
                 "--set", "train.steps=3"]) == 0
    assert _fit_info(c)["fit_cache"] == "stored" and _fit_info(c)["fit_cache_key"] != info["fit_cache_key"]
    entries = sorted(p.name for p in (cache / "generators").iterdir())
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(d), *FAST, "--no-cache"]) == 0
    assert "fit_cache" not in _fit_info(d)
    assert sorted(p.name for p in (cache / "generators").iterdir()) == entries


def test_key_covers_training_inputs_and_nothing_else():
    cfg = C.resolve_config(preset="smoke", generator="ldm", generator_preset={})
    base = fitcache.fit_key(cfg, "h", ["s1", "s2"])
    assert fitcache.fit_key(cfg, "h", ["s2", "s1"]) == base  # order of ids does not matter
    assert fitcache.fit_key(cfg, "other", ["s1", "s2"]) != base
    assert fitcache.fit_key(cfg, "h", ["s1"]) != base
    for key, value in (("train.steps", 7), ("dp.epsilon", 8.0), ("seed", 3), ("data.size", 96),
                       ("generator_options.lr", 1e-3)):
        assert fitcache.fit_key(C.apply_overrides(cfg, {key: value}), "h", ["s1", "s2"]) != base, key
    for key, value in (("audit.bootstrap", 10), ("sample.n_samples", 5), ("audit.privacy", False)):
        assert fitcache.fit_key(C.apply_overrides(cfg, {key: value}), "h", ["s1", "s2"]) == base, key


def _entry(tmp_path, key="k" * 32):
    gen = tmp_path / "gen"
    (gen / "sub").mkdir(parents=True)
    (gen / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (gen / "sub" / "config.json").write_text('{"a": 1}')
    losses = tmp_path / "losses.csv"
    losses.write_text("step,loss\n1,0.5\n")
    fitcache.store(key, gen, losses)
    return key


def test_an_entry_whose_files_match_their_stored_sha256_is_served(tmp_path, cache):
    key = _entry(tmp_path)
    hit = fitcache.lookup(key)
    assert hit is not None and (hit / "generator" / "model.safetensors").is_file()
    manifest = json.loads((hit / "COMPLETE").read_text())["sha256"]
    assert sorted(manifest) == ["generator/model.safetensors", "generator/sub/config.json", "losses.csv"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "extra", "manifest"])
def test_a_corrupt_entry_is_discarded_with_a_warning_never_served(tmp_path, cache, caplog, damage):
    key = _entry(tmp_path)
    d = fitcache.entry_dir(key)
    f = d / "generator" / "model.safetensors"
    if damage == "flip":
        data = bytearray(f.read_bytes())
        data[500] ^= 0x10
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:10])
    elif damage == "delete":
        (d / "losses.csv").unlink()
    elif damage == "extra":
        (d / "generator" / "planted.safetensors").write_bytes(b"x")
    else:
        (d / "COMPLETE").write_text(key + "\n")  # the manifest-less marker of older versions
    # a reader without the lock only reports a miss (it might be looking at a publication in progress)
    assert fitcache.lookup(key, discard_corrupt=False) is None and d.is_dir()
    with caplog.at_level("WARNING", logger="audit.pipeline.fitcache"):
        assert fitcache.lookup(key) is None
    assert not d.exists()
    assert "corrupt" in caplog.text and key in caplog.text


def test_a_run_retrains_over_a_corrupt_cache_entry(tmp_path, cache):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(a), *FAST]) == 0
    key = _fit_info(a)["fit_cache_key"]
    weights = sorted((fitcache.entry_dir(key) / "generator").rglob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x01  # one bit in the tensor data: safetensors itself would load it
    weights.write_bytes(bytes(data))
    assert main(["--quiet", "run", "--generator", "vae", "--preset", "smoke", "--out", str(b), *FAST]) == 0
    assert _fit_info(b)["fit_cache"] == "stored"  # retrained, not restored
    assert "is corrupt" in (b / "run.log").read_text()
    assert fitcache.lookup(key) is not None  # and the entry was rebuilt
