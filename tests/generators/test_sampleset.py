import warnings

import numpy as np
import pytest

from audit.core.errors import UserError
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


# --------------------------------------------------------------------------- hostile files

def _npy_header(shape, descr="<f4"):
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip(path, members):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(a):
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


SPACING = _npy(np.ones(2, np.float32))


def test_a_file_that_is_not_a_zip_is_not_called_pickled(tmp_path):
    """np.load falls back to unpickling a non-zip file, which was reported as "pickled data"."""
    path = tmp_path / "plain.npz"
    path.write_bytes(b"\x80\x04 looks a bit like a pickle")
    with pytest.raises(UserError, match=r"plain\.npz: not an \.npz sample set \(not a zip archive\)"):
        SampleSet.load(path)
    np.save(tmp_path / "single.npy", np.zeros((2, 8, 8), np.float32))
    with pytest.raises(UserError, match=r"single\.npy: is a single \.npy array, not an \.npz"):
        SampleSet.load(tmp_path / "single.npy")
    with pytest.raises(UserError, match="is a directory"):
        SampleSet.load(tmp_path)


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_and_corrupted_archives(tmp_path, compressed):
    s = SampleSet(**_ok())
    (np.savez_compressed if compressed else np.savez)(tmp_path / "s.npz", **s.to_arrays())
    raw = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=r"cut\.npz: truncated or corrupt \.npz \(zip\) archive"):
        SampleSet.load(tmp_path / "cut.npz")
    flipped = bytearray(raw)
    flipped[raw.index(b"\x93NUMPY") + 300 if not compressed else 200] ^= 0xFF  # inside the first member's data
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(UserError, match=r"flip\.npz: member '\w+\.npy' is corrupt or truncated"):
        SampleSet.load(tmp_path / "flip.npz")


def test_a_huge_header_is_refused_before_allocation(tmp_path, monkeypatch):
    path = _zip(tmp_path / "huge.npz", {"images.npy": _npy_header((10**6, 10**3, 10**3)) + b"\0" * 64, "spacing.npy": SPACING})
    with pytest.raises(UserError, match=r"huge\.npz: member 'images\.npy' declares shape \(1000000, 1000, 1000\) of "
                                        r"float32 \(4000000000000 bytes\), more than the 17179869184 bytes"):
        SampleSet.load(path)
    # the limit is a module constant; the sum of all members counts
    import generators.sampleset as sampleset

    ok = SampleSet(**_ok())
    ok.save(tmp_path / "ok.npz")
    monkeypatch.setattr(sampleset, "MAX_LOAD_BYTES", ok.images.nbytes + 4)
    with pytest.raises(UserError, match=r"ok\.npz: its arrays hold \d+ bytes, more than the \d+ bytes"):
        SampleSet.load(tmp_path / "ok.npz")


@pytest.mark.parametrize("header, data, message", [
    (_npy_header((4, 8, 8)), b"\0" * 16, r"declares shape \(4, 8, 8\) of float32 \(1024 bytes\) but holds 16 bytes"),
    (_npy_header((1, 2, 2)), b"\0" * 64, r"declares shape \(1, 2, 2\) of float32 \(16 bytes\) but holds 64 bytes"),
    (_npy_header((-1, 8, 8)), b"", r"has shape \(-1, 8, 8\), not an array of the sample-set contract"),
    (_npy_header((1, 1, 1, 1, 1, 1)), b"\0" * 4, r"has shape \(1, 1, 1, 1, 1, 1\), .*at most 4 dimensions"),
    (_npy_header((2,), "|O"), b"\0" * 16, r"holds object arrays \(pickled data\)"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n", b"", r"is not a valid \.npy array"),
    (b"not an npy header at all", b"", r"is not a valid \.npy array"),
    (b"\x93NUMPY\x09\x00", b"", r"uses \.npy format version 9\.0; only 1\.0 and 2\.0 are read"),
])
def test_bad_members_are_named(tmp_path, header, data, message):
    path = _zip(tmp_path / "m.npz", {"images.npy": header + data, "spacing.npy": SPACING})
    with pytest.raises(UserError, match=r"m\.npz: member 'images\.npy' " + message):
        SampleSet.load(path)


def test_archive_level_problems_are_named(tmp_path):
    images = _npy(np.zeros((1, 4, 4), np.float32))
    with pytest.raises(UserError, match=r"unknown keys \['images\.txt'\]"):
        SampleSet.load(_zip(tmp_path / "a.npz", {"images.npy": images, "spacing.npy": SPACING, "images.txt": b""}))
    twice = _zip(tmp_path / "b.npz", {"spacing.npy": SPACING, "images.npy": images})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        _append(twice, "images.npy", images)
    with pytest.raises(UserError, match="holds 'images.npy' more than once"):
        SampleSet.load(twice)
    with pytest.raises(UserError, match="missing required key 'images'"):
        SampleSet.load(_zip(tmp_path / "c.npz", {"spacing.npy": SPACING}))


def _append(path, name, data):
    import zipfile

    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(name, data)
    return path


def test_values_beyond_float32_are_not_finite():
    """1e300 is finite in float64 but inf once stored as the contract's float32."""
    with pytest.raises(UserError, match="'spacing' must be positive finite"):
        SampleSet(**{**_ok(), "spacing": np.array([1e300, 1.0])})
    with pytest.raises(UserError, match="'edv' must hold finite numbers"):
        SampleSet(**{**_ok(), "edv": np.full(4, 1e300)})
    with pytest.raises(UserError, match="'slice_index' holds 18446744073709551615, beyond int64"):
        SampleSet(**{**_ok(), "slice_index": np.full(4, 2**64 - 1, np.uint64)})


def test_a_set_larger_than_half_the_memory_is_refused_before_allocation(tmp_path, monkeypatch):
    """A compressed file can declare, honestly, more float32 than the machine holds: refused from
    the headers, before any array is allocated."""
    from generators import sampleset

    path = tmp_path / "big.npz"
    np.savez_compressed(path, images=np.zeros((64, 32, 32), np.float32), spacing=np.ones(2, np.float32))
    monkeypatch.setattr(sampleset, "_physical_memory", lambda: 100_000)  # a 100 kB machine
    with pytest.raises(UserError, match=r"big.npz: its arrays hold .* more than half of this machine's"):
        sampleset.SampleSet.load(path)
    monkeypatch.setattr(sampleset, "_physical_memory", lambda: None)  # the platform does not say
    assert sampleset.SampleSet.load(path).images.shape == (64, 32, 32)
