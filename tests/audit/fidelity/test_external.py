"""A user-supplied TorchScript feature space for the fidelity audit (e.g. FID Inception weights)."""

import numpy as np
import pytest
import torch

from audit.errors import UserError
from audit.fidelity.external import ExternalFeatures


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
    ex = ExternalFeatures(extractor_file, size=32)
    f = ex(np.random.default_rng(0).random((5, 40, 48), dtype=np.float32))
    assert f.shape == (5, 16) and f.dtype == np.float64
    assert "tiny.pt" in ex.label and ex.sha256[:12] in ex.label
    # the batch split does not change the features
    ex.batch_size = 2
    np.testing.assert_allclose(ex(np.random.default_rng(0).random((5, 40, 48), dtype=np.float32)), f, rtol=1e-6)


def test_bad_extractors(tmp_path, extractor_file):
    with pytest.raises(UserError, match="no such file"):
        ExternalFeatures(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torchscript")
    with pytest.raises(UserError, match="not a TorchScript module"):
        ExternalFeatures(junk)

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x  # (N,3,S,S): not features

    bad = tmp_path / "flat.pt"
    torch.jit.save(torch.jit.script(Flat()), str(bad))
    with pytest.raises(UserError, match="expected \\(N, D\\)"):
        ExternalFeatures(bad, size=16)(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(UserError, match="expected \\(N, H, W\\)"):
        ExternalFeatures(extractor_file, size=16)(np.zeros((8, 8), np.float32))


@pytest.mark.slow
@pytest.mark.judge
def test_external_space_separates_noise_from_real(tmp_path, extractor_file):
    from audit.cli.main import main
    from audit.results import load_results

    ratios = {}
    for gen in ("holdout", "noise"):
        out = tmp_path / gen
        rc = main(["--quiet", "run", "--generator", gen, "--preset", "smoke", "--out", str(out),
                   "--set", f"audit.feature_extractor={extractor_file}", "--set", "audit.feature_extractor_size=64",
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
