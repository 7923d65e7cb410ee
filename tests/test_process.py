"""The allocator setting made at process start (bench/process.py): what it does, its switch, who calls it."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bench.__main__ as cli
from bench import parallel, process
from bench.errors import UsageError

REPO = Path(__file__).resolve().parent.parent


class _FakeLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_tuned_sets_no_mmap_and_no_trim_and_says_so(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(process, "_glibc", lambda: libc)
    monkeypatch.delenv(process.MALLOC_ENV, raising=False)
    assert process.tune_allocator().startswith("tuned")
    assert libc.calls == [(process.M_MMAP_MAX, 0), (process.M_TRIM_THRESHOLD, process.TRIM_NEVER)]


def test_the_switch_leaves_glibc_alone(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(process, "_glibc", lambda: libc)
    monkeypatch.setenv(process.MALLOC_ENV, "default")
    assert process.tune_allocator() == "default (DCAE_BENCH_MALLOC=default)"
    assert libc.calls == []


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(process, "_glibc", lambda: None)
    monkeypatch.delenv(process.MALLOC_ENV, raising=False)
    assert process.tune_allocator().startswith("default (not glibc")


def test_an_unknown_switch_value_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(process.MALLOC_ENV, "jemalloc")
    with pytest.raises(UsageError, match="DCAE_BENCH_MALLOC='jemalloc'"):
        process.tune_allocator()
    env = {**os.environ, process.MALLOC_ENV: "jemalloc"}
    r = subprocess.run([sys.executable, "-m", "bench", "ls"], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "DCAE_BENCH_MALLOC" in r.stderr


_MMAP_PROBE = textwrap.dedent("""
    import ctypes
    from bench.process import tune_allocator

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    print(tune_allocator())
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.mallinfo2.restype = ctypes.c_void_p, MallInfo2
    before = libc.mallinfo2().hblks
    block = libc.malloc(64 << 20)  # far above glibc's mmap threshold
    print(libc.mallinfo2().hblks - before)  # blocks served by mmap
""")


@pytest.mark.skipif(process._glibc() is None or not hasattr(process._glibc(), "mallinfo2"),
                    reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("switch, mmapped", [("tuned", "0"), ("default", "1")])
def test_the_setting_takes_effect_in_glibc(switch, mmapped):
    """A 64 MB malloc comes from mmap with glibc's defaults and from the heap once tuned."""
    env = {**os.environ, process.MALLOC_ENV: switch}
    r = subprocess.run([sys.executable, "-c", _MMAP_PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                       check=True)
    said, count = r.stdout.splitlines()
    assert said.startswith(switch) and count == mmapped


def test_the_cli_and_every_worker_apply_it_at_start(monkeypatch):
    import torch
    called = []
    monkeypatch.setattr(process, "tune_allocator", lambda: called.append("tune") or "tuned")
    monkeypatch.setattr(cli, "main", lambda: called.append("main") or 0)
    with pytest.raises(SystemExit):
        cli.entry()
    assert called == ["tune", "main"]
    threads = torch.get_num_threads()
    try:
        parallel._init_worker(1)
    finally:
        torch.set_num_threads(threads)
    assert called == ["tune", "main", "tune"]
