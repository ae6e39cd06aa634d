"""Bad input to the judge-based audits: samples at another size or spacing than the cohort."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from audit.pipeline.anatomy_stage import check_compatible
from audit.core.errors import UserError
from generators.sampleset import SampleSet


def _ctx(tmp_path, size=64, spacing=3.0):
    cfg = SimpleNamespace(data=SimpleNamespace(size=size, target_spacing=spacing))
    return SimpleNamespace(cfg=cfg, run_dir=SimpleNamespace(path=tmp_path))


def _samples(size, spacing):
    return SampleSet(images=np.zeros((2, size, size), np.float32), spacing=np.array([spacing, spacing], np.float32))


def test_matching_samples_pass(tmp_path):
    check_compatible(_ctx(tmp_path), _samples(64, 3.0))


@pytest.mark.parametrize("size,spacing,words", [(96, 3.0, "96x96"), (64, 2.0, "2x2 mm")])
def test_mismatch_is_one_clear_line(tmp_path, size, spacing, words):
    with pytest.raises(UserError) as err:
        check_compatible(_ctx(tmp_path), _samples(size, spacing))
    msg = str(err.value)
    assert "\n" not in msg and "samples.npz" in msg and words in msg and "data.size" in msg
