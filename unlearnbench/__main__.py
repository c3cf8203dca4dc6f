"""``python -m unlearnbench`` and the ``unlearnbench`` command: set the allocator up, then run
the CLI. Kept free of heavy imports so the re-execution in ``_malloc`` happens before torch loads."""

from __future__ import annotations

import os
import sys

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


def run() -> None:
    if not print_only(sys.argv):
        from unlearnbench._malloc import reexec_if_needed

        reexec_if_needed()
    from unlearnbench.cli import main

    main()


if __name__ == "__main__":
    run()
