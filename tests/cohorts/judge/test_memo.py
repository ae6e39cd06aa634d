"""JudgeMemo: one judge pass per distinct image, cached on disk, invalidated by what changes the output."""

from __future__ import annotations

import numpy as np
import pytest

from audit.core.errors import UserError
from cohorts.judge.memo import JudgeMemo


class FakeJudge:
    """Stands in for the ONNX judge: deterministic labels/features, counts the images it sees."""

    def __init__(self, precision="int8", fov="acdc"):
        self.precision, self.fov, self.model_path = precision, fov, f"fake_{precision}.onnx"
        self.seen = 0

    def segment_and_features(self, slices, spacing=None):
        self.seen += len(slices)
        labels = (slices > 0.5).astype(np.uint8) * 3
        feats = np.stack([slices.mean(axis=(1, 2)), slices.std(axis=(1, 2)), np.full(len(slices), spacing[0])], 1)
        return labels, feats.astype(np.float32)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((5, 16, 16), dtype=np.float32)


def test_second_call_is_served_from_cache(tmp_path, images):
    judge = FakeJudge()
    memo = JudgeMemo(judge, root=tmp_path)
    l1, f1 = memo(images, (1.5, 1.5))
    l2, f2 = memo(images[[4, 0, 2]], (1.5, 1.5))
    assert judge.seen == 5 and memo.hits == 3
    np.testing.assert_array_equal(l2, l1[[4, 0, 2]])
    np.testing.assert_array_equal(f2, f1[[4, 0, 2]])
    direct = FakeJudge().segment_and_features(images, (1.5, 1.5))
    np.testing.assert_array_equal(l1, direct[0])
    np.testing.assert_allclose(f1, direct[1])


def test_key_depends_on_spacing_precision_and_pixels(tmp_path, images):
    memo = JudgeMemo(FakeJudge(), root=tmp_path)
    k = memo.key(images[0], (1.5, 1.5))
    assert memo.key(images[0], (1.5, 1.5)) == k
    assert memo.key(images[0], (2.0, 1.5)) != k
    other = images[0].copy()
    other[3, 3] += 1e-6
    assert memo.key(other, (1.5, 1.5)) != k
    assert JudgeMemo(FakeJudge(precision="fp32"), root=tmp_path).key(images[0], (1.5, 1.5)) != k
    assert JudgeMemo(FakeJudge(fov="square"), root=tmp_path).key(images[0], (1.5, 1.5)) != k


def test_corrupt_entry_is_recomputed(tmp_path, images, caplog):
    judge = FakeJudge()
    memo = JudgeMemo(judge, root=tmp_path)
    memo(images[:2], (1.5, 1.5))
    path = memo._path(memo.key(images[0], (1.5, 1.5)))
    path.write_bytes(b"not a zip")
    labels, _ = memo(images[:2], (1.5, 1.5))
    assert judge.seen == 3 and "unreadable" in caplog.text
    np.testing.assert_array_equal(labels[0], (images[0] > 0.5).astype(np.uint8) * 3)
    with np.load(path) as z:  # replaced by a good entry
        assert z["labels"].dtype == np.uint8


def test_bad_input_is_a_user_error(tmp_path, images):
    memo = JudgeMemo(FakeJudge(), root=tmp_path)
    with pytest.raises(UserError, match="NaN"):
        memo(np.full((1, 8, 8), np.nan, np.float32), (1.5, 1.5))
    with pytest.raises(UserError, match="spacing"):
        memo(images, (0.0, 1.5))
    with pytest.raises(UserError, match="3D"):
        memo(images[0], (1.5, 1.5))


@pytest.mark.judge
def test_matches_the_real_judge(tmp_path):
    from cohorts.judge import Judge, phantom_slices

    sl = phantom_slices(n_subjects=2, seed=7)[0]
    imgs, spacing = np.stack(sl.images[:3]), tuple(sl.spacing[0])
    judge = Judge(precision="fp32")
    memo = JudgeMemo(judge, root=tmp_path)
    labels, feats = memo(imgs, spacing)
    ref_l, ref_f = judge.segment_and_features(imgs, spacing=spacing)
    np.testing.assert_array_equal(labels, ref_l)
    np.testing.assert_array_equal(feats, ref_f)
    labels2, feats2 = memo(imgs, spacing)
    np.testing.assert_array_equal(feats2, ref_f)
