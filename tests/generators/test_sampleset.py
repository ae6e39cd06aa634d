import numpy as np
import pytest

from audit.errors import UserError
from generators.sampleset import SampleSet


def _ok(n=4, cine=False):
    shape = (n, 3, 8, 8) if cine else (n, 8, 8)
    rng = np.random.default_rng(0)
    return dict(
        images=rng.random(shape, dtype=np.float32),
        masks=rng.integers(0, 4, shape).astype(np.uint8),
        spacing=np.array([1.5, 1.5], np.float32),
        subject_ids=np.array([f"s{i}" for i in range(n)]),
        ef=np.linspace(40, 60, n).astype(np.float32),
    )


@pytest.mark.parametrize("cine", [False, True])
def test_round_trip(tmp_path, cine):
    s = SampleSet(**_ok(cine=cine))
    path = s.save(tmp_path / "s.npz")
    t = SampleSet.load(path)
    assert t.is_cine == cine and len(t) == 4
    np.testing.assert_array_equal(t.images, s.images)
    np.testing.assert_array_equal(t.masks, s.masks)
    assert t.subject_ids.tolist() == ["s0", "s1", "s2", "s3"]
    assert t.vendor is None


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(images=np.zeros((4, 8), np.float32)), "shape"),
        (dict(images=np.zeros((4, 8, 8), np.float64)), "float32"),
        (dict(images=np.full((4, 8, 8), np.nan, np.float32)), "NaN"),
        (dict(images=np.full((4, 8, 8), 3.0, np.float32)), r"\[0, 1\]"),
        (dict(masks=np.full((4, 8, 8), 5, np.uint8)), "labels \\[5\\]"),
        (dict(masks=np.zeros((4, 8, 9), np.uint8)), "differs"),
        (dict(masks=np.zeros((4, 8, 8), np.int64)), "uint8"),
        (dict(spacing=np.array([0.0, 1.0], np.float32)), "spacing"),
        (dict(subject_ids=np.array(["a"])), "subject_ids"),
        (dict(ef=np.array([1, 2, np.inf, 4], np.float32)), "finite"),
    ],
)
def test_contract_violations_are_named(change, message):
    kwargs = _ok()
    kwargs.update(change)
    with pytest.raises(UserError, match=message):
        SampleSet(**kwargs)


def test_load_errors_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="corrupt.npz"):
        SampleSet.load(bad)
    with pytest.raises(UserError, match="not found"):
        SampleSet.load(tmp_path / "missing.npz")
    extra = tmp_path / "extra.npz"
    np.savez(extra, images=np.zeros((1, 4, 4), np.float32), spacing=np.ones(2, np.float32), secret=np.zeros(1))
    with pytest.raises(UserError, match="unknown keys \\['secret'\\]"):
        SampleSet.load(extra)
    nospacing = tmp_path / "nospacing.npz"
    np.savez(nospacing, images=np.zeros((1, 4, 4), np.float32))
    with pytest.raises(UserError, match="nospacing.npz: missing required key 'spacing'"):
        SampleSet.load(nospacing)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, images=np.zeros((1, 4, 4), np.float32), spacing=np.ones(2, np.float32),
             subject_ids=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UserError, match="pickle"):
        SampleSet.load(pickled)
