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


# --------------------------------------------------------------------------- slice_index, (3,) spacing

def _cine_stack(subjects=2, slices=3, frames=4):
    """``subjects`` x ``slices`` cine rows; row order subject-major, slice positions 0..slices-1."""
    kw = _ok(n=subjects * slices, cine=True)
    kw["images"] = np.random.default_rng(1).random((subjects * slices, frames, 8, 8), dtype=np.float32)
    kw["masks"] = np.zeros(kw["images"].shape, np.uint8)
    kw["subject_ids"] = np.repeat([f"s{i}" for i in range(subjects)], slices)
    kw["slice_index"] = np.tile(np.arange(slices), subjects)
    kw["spacing"] = np.array([1.5, 1.5, 8.0], np.float32)
    kw["ef"] = np.repeat(np.linspace(40, 60, subjects), slices).astype(np.float32)
    return kw


def test_slice_index_and_3d_spacing_round_trip(tmp_path):
    s = SampleSet(**_cine_stack())
    assert s.spacing.shape == (3,) and s.slice_spacing == pytest.approx(8.0)
    np.testing.assert_allclose(s.pixel_spacing, [1.5, 1.5])
    t = SampleSet.load(s.save(tmp_path / "cine.npz"))
    assert t.slice_index.dtype == np.int64 and t.slice_index.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(t.spacing, [1.5, 1.5, 8.0])


def test_old_files_without_new_keys_still_load(tmp_path):
    kw = _ok()
    path = tmp_path / "old.npz"
    np.savez(path, **kw)  # written as an older cmr-audit did: (2,) spacing, no slice_index
    s = SampleSet.load(path)
    assert s.slice_index is None and s.slice_spacing is None
    np.testing.assert_allclose(s.pixel_spacing, [1.5, 1.5])


def test_frames_repeat_slice_index_and_keep_spacing():
    s = SampleSet(**_cine_stack(subjects=2, slices=3, frames=4))
    f = s.frames()
    assert len(f) == 24 and not f.is_cine
    assert f.slice_index.tolist() == np.repeat([0, 1, 2, 0, 1, 2], 4).tolist()
    assert f.subject_ids[4] == "s0" and f.slice_index[4] == 1  # frame i*T+t is frame t of row i
    np.testing.assert_allclose(f.spacing, s.spacing)
    assert f.ef.tolist() == np.repeat(s.ef, 4).tolist()


def test_2d_rows_may_share_a_slice_position():
    kw = _ok(n=4)
    kw["subject_ids"] = np.array(["a", "a", "a", "a"])
    kw["slice_index"] = np.array([0, 1, 0, 1])  # ED and ES slices of one subject
    assert SampleSet(**kw).slice_index.tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(slice_index=np.array([0, -1, 2, 0, 1, 2])), r"'slice_index' must be >= 0"),
        (dict(slice_index=np.array([0, 1, 1, 0, 1, 2])), r"'slice_index' 1 occurs twice for subject 's0' \(rows 1 and 2\)"),
        (dict(slice_index=np.array([0, 1, 2, 0, 1, 2], np.float32)), "'slice_index' must hold integers"),
        (dict(slice_index=np.array([0, 1, 2])), r"'slice_index' must have shape \(6,\)"),
        (dict(subject_ids=None), "'slice_index' needs 'subject_ids'"),
        (dict(spacing=np.array([1.5, 1.5, 8.0, 1.0], np.float32)), r"'spacing' must be \(2,\) in-plane or \(3,\)"),
        (dict(spacing=np.array([1.5], np.float32)), r"got shape \(1,\)"),
        (dict(spacing=np.array([1.5, 1.5, 0.0], np.float32)), "'spacing' must be positive finite"),
        (dict(spacing=np.array([1.5, 1.5, np.nan], np.float32)), "'spacing' must be positive finite"),
        (dict(spacing=np.array(["a", "b", "c"])), r"'spacing' must be \(2,\)"),
    ],
)
def test_slice_index_and_spacing_violations_are_named(change, message):
    kw = _cine_stack()
    kw.update(change)
    with pytest.raises(UserError, match=message):
        SampleSet(**kw)


def test_slice_index_violation_on_load_names_the_file(tmp_path):
    kw = _cine_stack()
    kw["slice_index"] = np.array([0, 0, 1, 0, 1, 2])
    path = tmp_path / "dup.npz"
    np.savez(path, **kw)
    with pytest.raises(UserError, match=r"dup\.npz: 'slice_index' 0 occurs twice"):
        SampleSet.load(path)
