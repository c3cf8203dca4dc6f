"""``python -m unlearnbench`` and the ``unlearnbench`` command: set the allocator up, then run
the CLI. Kept free of heavy imports so the re-execution in ``_malloc`` happens before torch loads."""

from __future__ import annotations

import sys


def run() -> None:
    from unlearnbench._stdio import ensure_streams

    ensure_streams()
    from unlearnbench._malloc import print_only, reexec_if_needed
    from unlearnbench.core.cpus import default_threads_env

    default_threads_env()  # before torch loads (and before the re-execution, which inherits it)
    if not print_only(sys.argv):
        reexec_if_needed()
    from unlearnbench.cli import main

    main()


if __name__ == "__main__":
    run()
