"""A user-supplied TorchScript feature space for the fidelity audit (e.g. FID Inception weights),
and the pinned sha256 it needs because loading it runs its code."""

import hashlib
import io

import numpy as np
import pytest
import torch

from audit.core.errors import UserError
from audit.fidelity.external import ExternalFeatures, read_pinned


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Tiny(torch.nn.Module):
    """Fixed random conv features, global-average pooled: (N,3,S,S) -> (N,16)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 5, stride=2)

    def forward(self, x):
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture
def extractor_file(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(_Tiny()), str(path))
    return path


def test_features_and_label(extractor_file):
    ex = ExternalFeatures(extractor_file, size=32, sha256=sha(extractor_file))
    f = ex(np.random.default_rng(0).random((5, 40, 48), dtype=np.float32))
    assert f.shape == (5, 16) and f.dtype == np.float64
    assert "tiny.pt" in ex.label and ex.sha256[:12] in ex.label
    # the batch split does not change the features
    ex.batch_size = 2
    np.testing.assert_allclose(ex(np.random.default_rng(0).random((5, 40, 48), dtype=np.float32)), f, rtol=1e-6)


def test_bad_extractors(tmp_path, extractor_file):
    with pytest.raises(UserError, match="no such file"):
        ExternalFeatures(tmp_path / "missing.pt", sha256="0" * 64)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torchscript")
    with pytest.raises(UserError, match="not a TorchScript module"):
        ExternalFeatures(junk, sha256=sha(junk))

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x  # (N,3,S,S): not features

    bad = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(Flat()), str(bad))
    with pytest.raises(UserError, match="expected \\(N, D\\)"):
        ExternalFeatures(bad, size=16, sha256=sha(bad))(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(UserError, match="expected \\(N, H, W\\)"):
        ExternalFeatures(extractor_file, size=16, sha256=sha(extractor_file))(np.zeros((8, 8), np.float32))


# --------------------------------------------------------------------------- the pinned hash

def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_missing_hash_is_refused_naming_file_and_actual_hash(extractor_file):
    with pytest.raises(UserError) as err:
        ExternalFeatures(extractor_file, size=32, sha256="")
    msg = one_line(err)
    assert str(extractor_file) in msg and "no sha256 pinned" in msg and f"actual: {sha(extractor_file)}" in msg
    assert "runs its code" in msg and "audit.feature_extractor_sha256" in msg


def test_wrong_hash_is_refused_naming_expected_and_actual(extractor_file):
    wrong = "ab" * 32
    with pytest.raises(UserError) as err:
        ExternalFeatures(extractor_file, size=32, sha256=wrong)
    msg = one_line(err)
    assert str(extractor_file) in msg and f"expected {wrong}" in msg and f"actual {sha(extractor_file)}" in msg


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "a" * 63, "a" * 65, "sha256:" + "a" * 64])
def test_malformed_hash_is_refused(extractor_file, bad):
    with pytest.raises(UserError) as err:
        read_pinned(extractor_file, bad)
    assert "audit.feature_extractor_sha256" in one_line(err) and "64 hexadecimal digits" in str(err.value)


def test_right_hash_loads_and_any_case_is_accepted(extractor_file):
    ex = ExternalFeatures(extractor_file, size=32, sha256=sha(extractor_file).upper())
    assert ex.sha256 == sha(extractor_file)
    assert ex(np.zeros((2, 16, 16), np.float32)).shape == (2, 16)


def test_the_hashed_bytes_are_the_loaded_bytes(extractor_file, monkeypatch):
    """torch.jit.load gets the bytes that were hashed (a buffer), never the path: a file replaced
    between the check and the load cannot slip in."""
    seen = []
    real_load = torch.jit.load

    def spy(f, *args, **kwargs):
        seen.append(f)
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", spy)
    ExternalFeatures(extractor_file, size=32, sha256=sha(extractor_file))
    assert len(seen) == 1 and isinstance(seen[0], io.BytesIO)
    assert hashlib.sha256(seen[0].getvalue()).hexdigest() == sha(extractor_file)


def test_config_rejects_a_malformed_hash():
    from audit.pipeline.config import resolve_config

    with pytest.raises(UserError) as err:
        resolve_config(overrides={"audit.feature_extractor_sha256": "not-a-hash"})
    assert "audit.feature_extractor_sha256 must be 64 hexadecimal digits" in one_line(err) and "not-a-hash" in str(err.value)
    good = "Ab" * 32
    assert resolve_config(overrides={"audit.feature_extractor_sha256": good}).audit.feature_extractor_sha256 == good


def test_run_refuses_an_unpinned_or_different_extractor_before_any_stage(extractor_file, tmp_path, monkeypatch, capsys):
    from audit.pipeline import run, stages
    from audit.cli.main import main

    def no_stage(ctx):
        raise AssertionError("a stage ran")

    monkeypatch.setattr(stages, "PIPELINE", [run.Stage("cohort", no_stage)])
    monkeypatch.chdir(tmp_path)
    digest, wrong = sha(extractor_file), "0" * 64
    cases = [([], ["no sha256 pinned", f"actual: {digest}"]),
             ([f"audit.feature_extractor_sha256={wrong}"], [f"expected {wrong}", f"actual {digest}"]),
             (["audit.feature_extractor_sha256=xyz"], ["audit.feature_extractor_sha256 must be 64 hexadecimal digits"])]
    for sets, needles in cases:
        out = tmp_path / "out"
        argv = ["run", "--generator", "copycat", "--preset", "smoke", "--out", str(out),
                "--set", f"audit.feature_extractor={extractor_file}"]
        for s in sets:
            argv += ["--set", s]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert all(n in err for n in needles), err
        assert not out.exists() and not (tmp_path / "runs").exists()

    from audit.pipeline.config import resolve_config

    run._check_inputs(resolve_config(overrides={"audit.feature_extractor": str(extractor_file),
                                                "audit.feature_extractor_sha256": digest}))  # pinned: passes


@pytest.mark.slow
@pytest.mark.judge
def test_external_space_separates_noise_from_real(tmp_path, extractor_file):
    from audit.cli.main import main
    from audit.core.results import load_results

    ratios = {}
    for gen in ("holdout", "noise"):
        out = tmp_path / gen
        rc = main(["--quiet", "run", "--generator", gen, "--preset", "smoke", "--out", str(out),
                   "--set", f"audit.feature_extractor={extractor_file}", "--set", "audit.feature_extractor_size=64",
                   "--set", f"audit.feature_extractor_sha256={sha(extractor_file)}",
                   "--set", "audit.utility=false", "--set", "audit.privacy=false"])
        assert rc == 0
        fid = load_results(out / "results.json")["fidelity"]
        ext = fid["external"]
        assert "external features (tiny.pt, sha256" in ext["synthetic_vs_test"]["fid"]["method"]
        assert (out / "features_external.npz").is_file()
        assert "inception" not in fid and "judge" in fid  # spaces side by side, never mixed
        ratios[gen] = ext["fid_ratio_to_floor"]["value"]
        assert "external features (tiny.pt" in (out / "report.html").read_text()
    assert ratios["noise"] > 5 * ratios["holdout"], ratios
