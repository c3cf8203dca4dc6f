"""Threads on shared machines: the default thread count is the CPUs this process may use (its
affinity mask, the cgroup v2 quota), set before torch loads unless the user chose one; every
command that computes takes --threads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.main import get_command
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core import cpus

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "quota"), [("max 100000", None), ("150000 100000", 1.5), ("50000 100000", 0.5),
                                            ("garbage", None), ("0 100000", None)])
def test_cgroup_quota(tmp_path, text, quota):
    f = tmp_path / "cpu.max"
    f.write_text(text + "\n")
    assert cpus.cgroup_quota(f) == quota
    assert cpus.cgroup_quota(tmp_path / "absent") is None


def test_usable_cpus_is_the_smaller_of_affinity_and_quota(tmp_path, monkeypatch):
    f = tmp_path / "cpu.max"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    f.write_text("max 100000\n")
    assert cpus.usable_cpus(f) == 8
    f.write_text("250000 100000\n")
    assert cpus.usable_cpus(f) == 3  # 2.5 CPUs of quota: 3 threads, the last one partly
    f.write_text("50000 100000\n")
    assert cpus.usable_cpus(f) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    f.write_text("max 100000\n")
    assert cpus.usable_cpus(f) == 1


def test_the_default_is_set_before_torch_unless_chosen(monkeypatch):
    monkeypatch.setattr(cpus, "usable_cpus", lambda path=cpus.CGROUP_CPU_MAX: 3)
    env: dict[str, str] = {}
    assert cpus.default_threads_env(env) == 3 and env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    env = {"OMP_NUM_THREADS": "5"}
    assert cpus.default_threads_env(env) is None and env == {"OMP_NUM_THREADS": "5"}


def test_torch_starts_with_the_usable_cpus_of_a_pinned_process():
    """The CLI's start-up, in a process pinned to one CPU: torch comes up with one thread."""
    env = {k: v for k, v in os.environ.items() if k not in cpus.THREAD_VARS}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from unlearnbench.core.cpus import default_threads_env; default_threads_env(); "
            "import torch; print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "1", out


def test_every_command_that_computes_takes_threads(tmp_path):
    group = get_command(app)
    computing = [["train"], ["unlearn"], ["evaluate"], ["attack"], ["import"], ["benchmark"], ["demo"],
                 ["shadow", "train"]]
    for path in computing:
        cmd = group
        for part in path:
            cmd = cmd.commands[part]
        assert "--threads" in {o for p in cmd.params for o in p.opts}, path
    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, ["train", "--epochs", "1", "--threads", "1", "--no-track", "-q",
                                          "--out", str(tmp_path / "m.pt")])
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        result = CliRunner().invoke(app, ["train", "--threads", "0", "--no-track", "--out", str(tmp_path / "n.pt")])
        assert result.exit_code == 2 and "--threads must be at least 1" in result.output
        assert not (tmp_path / "n.pt").exists()
    finally:
        torch.set_num_threads(before)
