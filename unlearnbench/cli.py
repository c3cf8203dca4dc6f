"""The ``unlearnbench`` command line: parse → build config → call the library → print/log.

Commands live in ``unlearnbench.commands``; importing them registers them on the app.
"""

from __future__ import annotations

import typer

import unlearnbench
from unlearnbench.commands import attack as _attack  # noqa: F401
from unlearnbench.commands import evaluate as _evaluate  # noqa: F401
from unlearnbench.commands import import_ as _import  # noqa: F401  (registers import)
from unlearnbench.commands import report as _report  # noqa: F401  (registers report)
from unlearnbench.commands import schedule as _schedule  # noqa: F401  (registers schedule)
from unlearnbench.commands import study as _study  # noqa: F401  (registers benchmark, demo)
from unlearnbench.commands import train as _train  # noqa: F401  (registers train, ls)
from unlearnbench.commands import unlearn as _unlearn  # noqa: F401
from unlearnbench.commands._common import app, console


def _version(value: bool) -> None:
    if value:
        console.print(f"unlearnbench {unlearnbench.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Machine-unlearning and adversarial-robustness evaluation for image classifiers."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
