"""Fuzzing :meth:`SampleSet.load`: any file either loads as a valid sample set or raises
:class:`UserError` naming it -- never another exception, never an allocation a header asked for.

Derandomized (the same examples on every run, so CI is reproducible) and kept small: the
whole module runs in a few seconds."""

import io
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.core.errors import UserError
from generators.sampleset import ACDC_LABELS, MAX_LOAD_BYTES, RANGE_TOL, SampleSet

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

KEYS = ("images", "masks", "spacing", "subject_ids", "vendor", "group", "ef", "edv", "esv", "slice_index")
DTYPES = ("<f4", "<f8", ">f4", "<f2", "|u1", "<i8", "<u8", "|b1", "<c8", "<U3", "|S2", "|O", "|V4")


@pytest.fixture(scope="module")
def scratch(module_tmp):
    return module_tmp("sampleset-fuzz")


def _load_or_user_error(path):
    """The property: a loaded set satisfies the contract; anything else is one UserError naming the file."""
    try:
        s = SampleSet.load(path)
    except UserError as exc:
        msg = str(exc)
        assert str(path) in msg and "\n" not in msg, msg
        return None
    im = s.images
    assert im.dtype == np.float32 and im.ndim in (3, 4) and np.isfinite(im).all()
    assert im.min() >= -RANGE_TOL and im.max() <= 1 + RANGE_TOL
    assert s.spacing.dtype == np.float32 and np.isfinite(s.spacing).all() and (s.spacing > 0).all()
    if s.masks is not None:
        assert s.masks.shape == im.shape and set(np.unique(s.masks).tolist()) <= set(ACDC_LABELS)
    for key in ("ef", "edv", "esv"):
        value = getattr(s, key)
        assert value is None or (value.shape == (len(s),) and np.isfinite(value).all())
    return s


def _valid(n=3, cine=False):
    shape = (n, 2, 6, 6) if cine else (n, 6, 6)
    rng = np.random.default_rng(n)
    return dict(images=rng.random(shape, dtype=np.float32), masks=rng.integers(0, 4, shape).astype(np.uint8),
                spacing=np.array([1.5, 1.5], np.float32), subject_ids=np.array([f"s{i}" for i in range(n)]),
                ef=np.full(n, 55.0, np.float32))


def _npz_bytes(arrays, compressed):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


# --------------------------------------------------------------------------- arbitrary bytes

@FUZZ
@given(data=st.one_of(
    st.binary(max_size=600),
    st.binary(max_size=600).map(lambda b: b"PK\x03\x04" + b),
    st.binary(max_size=600).map(lambda b: b"\x93NUMPY" + b),
))
def test_arbitrary_bytes(scratch, data):
    path = scratch / "bytes.npz"
    path.write_bytes(data)
    assert _load_or_user_error(path) is None  # random bytes are never a sample set


# --------------------------------------------------------------------------- mutated valid files

def _array(draw, n):
    """One array with a random dtype and shape near the contract's, with awkward values."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    ndim = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, n, 6]), min_size=ndim, max_size=ndim)))
    size = int(np.prod(shape))
    if dtype.kind == "O":
        return np.array([{"x": 1}] * size, dtype=object).reshape(shape)
    if dtype.kind == "V":
        return np.zeros(shape, dtype)
    if dtype.kind in "US":
        return np.array([draw(st.sampled_from(["", "a", "abc"])) for _ in range(size)], dtype).reshape(shape)
    special = [0, 1, 3, 4, 255, -1, 0.5, np.nan, np.inf, -np.inf, 1e300, 2**63, 1.0001]
    values = draw(st.lists(st.sampled_from(special), min_size=size, max_size=size))
    with np.errstate(all="ignore"):  # nan -> int and the like: garbage values are the point
        out = np.array(values, dtype=np.float64).astype(dtype) if size else np.zeros(shape, dtype)
    return out.reshape(shape)


POISON = {"f": [np.nan, np.inf, -np.inf, 1e300, -0.5, 1.5, 0.0], "u": [4, 5, 255, 2**64 - 1], "i": [-1, 2**62],
          "U": ["", "é", "a" * 20], "b": [True]}


@st.composite
def mutated_sets(draw):
    """A valid set, then per drawn key: poisoned values (NaN, inf, out-of-range labels...) in
    place, a cast to another dtype, a random array instead, or the key dropped; rarely an
    unknown key."""
    arrays = _valid(n=draw(st.integers(1, 3)), cine=draw(st.booleans()))
    arrays.update(slice_index=np.arange(len(arrays["images"])), vendor=np.array(["A"] * len(arrays["images"])))
    n = len(arrays["images"])
    keys = st.sampled_from(KEYS * 8 + ("secret", "images.npy", ""))  # unknown keys: about one draw in 27
    for key in draw(st.lists(keys, min_size=1, max_size=3, unique=True)):
        action = draw(st.sampled_from(["poison", "poison", "cast", "replace", "drop"]))
        current = arrays.get(key)
        if action == "drop":
            arrays.pop(key, None)
        elif action == "replace" or current is None or current.size == 0:
            arrays[key] = _array(draw, n)
        elif action == "cast":
            kinds = "US" if current.dtype.kind in "US" else "fuibcUS"  # strings like 's0' are no numbers
            target = draw(st.sampled_from([d for d in DTYPES if np.dtype(d).kind in kinds]))
            with np.errstate(all="ignore"):
                arrays[key] = current.astype(target)
        else:
            flat = current.copy().reshape(-1)
            for i in draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=3)):
                with np.errstate(all="ignore"):
                    flat[i] = np.array(draw(st.sampled_from(POISON.get(flat.dtype.kind, [0])))).astype(flat.dtype)
            arrays[key] = flat.reshape(current.shape)
    if "slice_index" in arrays and draw(st.booleans()):
        arrays["slice_index"] = np.zeros(n, np.int64)  # duplicate positions in a cine set
    return arrays


@FUZZ
@given(arrays=mutated_sets(), compressed=st.booleans())
def test_structurally_mutated_sets(scratch, arrays, compressed):
    path = scratch / "mutated.npz"
    path.write_bytes(_npz_bytes(arrays, compressed))
    _load_or_user_error(path)


@FUZZ
@given(cine=st.booleans(), compressed=st.booleans(), data=st.data())
def test_truncated_and_bit_flipped_files(scratch, cine, compressed, data):
    raw = _npz_bytes(_valid(cine=cine), compressed)
    path = scratch / "damaged.npz"
    how = data.draw(st.sampled_from(["truncate", "flip", "both"]))
    damaged = bytearray(raw)
    if how in ("flip", "both"):
        for offset in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            damaged[offset] ^= data.draw(st.integers(1, 255))
    if how in ("truncate", "both"):
        damaged = damaged[: data.draw(st.integers(0, len(raw) - 1))]
    path.write_bytes(bytes(damaged))
    _load_or_user_error(path)


# --------------------------------------------------------------------------- hostile .npy headers

@st.composite
def hostile_members(draw):
    """A zip whose ``images.npy`` header declares any shape and dtype, followed by any amount of data."""
    shape = tuple(draw(st.lists(st.one_of(st.integers(0, 8), st.integers(-3, 10**15)), max_size=6)))
    descr = draw(st.sampled_from(["<f4", "<f8", "|u1", "|O", "<U100000000", "|V0", "<U0", "bogus", "[('a', '<f4')]"]))
    header = io.BytesIO()
    try:
        np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": draw(st.booleans()),
                                                      "shape": shape})
        head = header.getvalue()
    except Exception:  # noqa: BLE001 - the writer refuses some descr strings; write a raw header then
        text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1") + b"\n"
        head = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
    body = bytes(draw(st.integers(0, 300)))
    return head + body


@FUZZ
@given(member=hostile_members(), method=st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_hostile_headers_never_allocate(scratch, member, method):
    path = scratch / "hostile.npz"
    spacing = io.BytesIO()
    np.save(spacing, np.ones(2, np.float32))
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        zf.writestr("images.npy", member)
        zf.writestr("spacing.npy", spacing.getvalue())
    s = _load_or_user_error(path)
    assert s is None or s.images.nbytes <= MAX_LOAD_BYTES


def _data_offset(raw: bytes, name: str) -> int:
    """Where member ``name``'s (compressed) data starts in the archive ``raw``."""
    info = zipfile.ZipFile(io.BytesIO(raw)).getinfo(name)
    local = raw[info.header_offset: info.header_offset + 30]
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


@pytest.mark.parametrize("compressed", [False, True])
def test_damaged_member_data_reaches_the_member_reader(scratch, compressed):
    """The property tests are only worth something if damage inside a member's data gets past the
    zip directory to the member reader (a bad CRC when stored, a broken stream when deflated)."""
    raw = _npz_bytes(_valid(), compressed)
    bad = bytearray(raw)
    start = _data_offset(raw, "images.npy")
    for offset in range(start + 140, start + 150):  # past the .npy header, inside the data
        bad[offset] ^= 0xFF
    (scratch / "member.npz").write_bytes(bytes(bad))
    with pytest.raises(UserError, match=r"member 'images\.npy' is (corrupt or truncated|not a valid)"):
        SampleSet.load(scratch / "member.npz")
