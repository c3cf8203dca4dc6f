"""glibc malloc settings every ``unlearnbench`` process starts with (stdlib only; imported before
torch).

PyTorch's CPU tensors come from glibc malloc. A training or evaluation batch allocates and frees
activation buffers of megabytes each step; above glibc's mmap threshold each of them is a fresh
``mmap`` whose pages the kernel must zero and fault in, and freeing heap memory trims it back to
the kernel, so the next step faults it in again. A CPU profile showed 12-28 % of the time in the
kernel on page faults. Keeping large blocks in the heap (no mmap for them) and never trimming it
removes those faults; ``benchmarks/allocator_speed.py`` measures the effect side by side.

The variables must be in the environment before the allocator initialises, i.e. before the
Python process starts, so the CLI re-executes itself once with them set (``reexec_if_needed``).
It does nothing when the C library is not glibc (the variables mean nothing elsewhere), when the
user set any ``MALLOC_*`` variable, when ``UNLEARNBENCH_MALLOC=off``, or when already done.
"""

from __future__ import annotations

import os
import platform
import sys

# Never serve large blocks by mmap (they come from the heap and are reused) and never give the
# heap's top back to the kernel (it is needed again next batch). The cost is a resident set that
# stays at its peak until the process ends, which is what a training process does anyway.
# A 64 MiB top pad grows the heap in large steps. (glibc caps MALLOC_MMAP_THRESHOLD_ at 32 MiB,
# below a ResNet batch's largest activations, so raising the threshold alone leaves faults.)
TUNED = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1024**4),
    "MALLOC_TOP_PAD_": str(64 * 1024 * 1024),
}
SWITCH = "UNLEARNBENCH_MALLOC"  # "off": keep glibc's defaults
_DONE = "UNLEARNBENCH_MALLOC_APPLIED"


def is_glibc() -> bool:
    try:
        return platform.libc_ver()[0] == "glibc"
    except OSError:  # pragma: no cover - no readable executable
        return False


def wanted(environ: dict[str, str] | os._Environ | None = None) -> bool:
    """True when this process should restart with ``TUNED`` set."""
    env = os.environ if environ is None else environ
    if env.get(SWITCH, "").lower() in ("off", "0", "false", "no") or env.get(_DONE):
        return False
    if any(k.startswith("MALLOC_") for k in env):  # the user chose their own settings
        return False
    return sys.platform.startswith("linux") and is_glibc()


def reexec_if_needed(argv: list[str] | None = None) -> None:
    """Replace this process by the same command with ``TUNED`` in its environment (once)."""
    if not wanted():
        return
    argv = list(argv if argv is not None else getattr(sys, "orig_argv", []) or [sys.executable, *sys.argv])
    if not argv:
        return
    env = {**os.environ, **TUNED, _DONE: "1"}
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:  # cannot re-execute (odd sandbox): run with the defaults
        os.environ[_DONE] = "1"


# Commands that only print (help, version, listings, completion, the environment check) never
# allocate tensors: they skip the allocator's re-execution, a second interpreter start-up.
_PRINT_ONLY_FLAGS = {"-h", "--help", "--version", "--show-completion", "--install-completion"}
_PRINT_ONLY_COMMANDS = {"ls", "doctor"}


def print_only(argv: list[str], environ: dict[str, str] | os._Environ | None = None) -> bool:
    env = os.environ if environ is None else environ
    if any(k.endswith("_COMPLETE") and k.startswith("_") for k in env):  # shell completion asks
        return True
    args = argv[1:]
    return not args or bool(_PRINT_ONLY_FLAGS.intersection(args)) or args[0] in _PRINT_ONLY_COMMANDS
