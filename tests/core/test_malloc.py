"""The glibc malloc settings every `unlearnbench` process starts with: set once, before the
allocator starts (by re-executing), never over the user's own MALLOC_* choices."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from unlearnbench import _malloc

PROBE = ("from unlearnbench._malloc import reexec_if_needed; reexec_if_needed(); import os; "
         "print(os.environ.get('MALLOC_MMAP_MAX_'), os.environ.get('MALLOC_ARENA_MAX'), os.getpid())")


def _probe(**env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "UNLEARNBENCH_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


def test_wanted_respects_the_user_and_runs_once():
    assert not _malloc.wanted({"MALLOC_ARENA_MAX": "2"})
    assert not _malloc.wanted({_malloc.SWITCH: "off"})
    assert not _malloc.wanted({_malloc._DONE: "1"})
    assert _malloc.wanted({}) == (sys.platform.startswith("linux") and _malloc.is_glibc())


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _malloc.is_glibc()), reason="glibc only")
def test_the_process_restarts_with_the_settings_before_doing_anything():
    mmap_max, arena, _ = _probe()
    assert mmap_max == _malloc.TUNED["MALLOC_MMAP_MAX_"] and arena == "None"
    assert _probe(UNLEARNBENCH_MALLOC="off")[:2] == ["None", "None"]
    assert _probe(MALLOC_ARENA_MAX="2")[:2] == ["None", "2"]  # the user's own settings win


@pytest.mark.skipif(not (sys.platform.startswith("linux") and _malloc.is_glibc()), reason="glibc only")
def test_python_m_unlearnbench_runs_the_cli():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-m", "unlearnbench", "--version"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("unlearnbench "), out.stderr
