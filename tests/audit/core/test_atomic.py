import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from audit.core.atomic import atomic_open, atomic_save_npz, atomic_write_json, atomic_write_text


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": 1})
    atomic_write_json(p, {"x": 2})
    assert json.loads(p.read_text()) == {"x": 2}
    assert [f.name for f in p.parent.iterdir()] == ["a.json"]  # no temp files left


def test_exception_mid_write_keeps_old_file(tmp_path):
    p = tmp_path / "a.txt"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError):
        with atomic_open(p, "w") as fh:
            fh.write("new, half")
            raise RuntimeError("crash")
    assert p.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.txt"]


def test_unserialisable_json_never_touches_file(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"x": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"x": object()})
    with pytest.raises(ValueError):
        atomic_write_json(p, {"x": float("nan")})
    assert json.loads(p.read_text()) == {"x": 1}


def test_killed_process_mid_write_keeps_old_file(tmp_path):
    """A real crash: the writer is SIGKILLed while streaming; the old file survives intact."""
    p = tmp_path / "big.bin"
    p.write_bytes(b"old-content")
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from audit.core.atomic import atomic_open
        with atomic_open({str(p)!r}, "wb") as fh:
            fh.write(b"x" * 1_000_000)
            fh.flush()
            sys.stdout.write("writing\\n"); sys.stdout.flush()
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=10)
    assert p.read_bytes() == b"old-content"
    leftovers = [f.name for f in tmp_path.iterdir() if f.name != "big.bin"]
    assert all(name.startswith(".big.bin.") and name.endswith(".tmp") for name in leftovers)


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "a.npz"
    atomic_save_npz(p, x=np.arange(3))

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_save_npz(p, x=np.arange(5))
    monkeypatch.undo()
    assert np.load(p)["x"].tolist() == [0, 1, 2]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.npz"]


def test_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError):
        with atomic_open(tmp_path / "a", "a"):
            pass


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644


def test_atomic_dir_replaces_only_on_success(tmp_path):
    from audit.core.atomic import atomic_dir

    target = tmp_path / "d"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    assert (target / "a").read_text() == "1" and (target.stat().st_mode & 0o777) != 0o700
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["d"]
