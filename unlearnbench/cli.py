"""The ``unlearnbench`` command line: parse → build config → call the library → print/log.

Commands live in ``unlearnbench.commands``; importing them registers them on the app.
"""

from __future__ import annotations

import inspect
import re

import typer

import unlearnbench
from unlearnbench.commands import attack as _attack  # noqa: F401
from unlearnbench.commands import doctor as _doctor  # noqa: F401  (registers doctor)
from unlearnbench.commands import evaluate as _evaluate  # noqa: F401
from unlearnbench.commands import generate as _generate  # noqa: F401  (registers sample)
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


def _unwrap(text: str) -> str:
    """Join the lines of each paragraph: the help is re-wrapped to the terminal, so a docstring's
    own line breaks would otherwise end lines in mid-sentence."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(text))
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _tidy_help(typer_app: typer.Typer) -> None:
    """Help text a terminal shows well: whole sentences (see ``_unwrap``)."""
    for cmd in typer_app.registered_commands:
        if cmd.callback is not None and cmd.help is None and cmd.callback.__doc__:
            cmd.help = _unwrap(cmd.callback.__doc__)
        if cmd.help and cmd.short_help is None:
            # The command list shows the first paragraph whole (click would cut it at the width with "...").
            cmd.short_help = cmd.help.split("\n\n")[0]
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _tidy_help(group.typer_instance)


def _no_flag_metavar() -> None:
    """An on/off flag takes no value, so its help row shows no type (Typer prints ``<bool>``,
    even after --help). Guarded: a Typer without this hook keeps its default display."""
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - another Typer layout
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_unlearnbench", False):
        return

    def display_type_rich(self, ctx):  # noqa: ANN001, ANN202
        if getattr(self, "is_bool_flag", False):
            return None
        return original(self, ctx)

    display_type_rich._unlearnbench = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich


_no_flag_metavar()
_tidy_help(app)


def main() -> None:
    # An installation whose `unlearnbench` script still points here (installed before
    # `unlearnbench.__main__:run`) or `python -m unlearnbench.cli`: tune the allocator now; this
    # re-executes after the imports above, so `python -m unlearnbench` is the faster way in.
    import sys

    from unlearnbench._malloc import print_only, reexec_if_needed
    from unlearnbench.core.cpus import default_threads_env

    default_threads_env()
    if not print_only(sys.argv):
        reexec_if_needed()
    app()


if __name__ == "__main__":
    main()
