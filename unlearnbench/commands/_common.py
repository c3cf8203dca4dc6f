"""Shared CLI plumbing: the Typer app, error handling, consoles and option helpers."""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click as typer._click; its usage errors are that copy's classes
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_exceptions

from unlearnbench.core import progress
from unlearnbench.core.config import from_dict, load_yaml, parse_overrides
from unlearnbench.core.errors import UserError


class _OneLineErrors(TyperGroup):
    """Usage mistakes (unknown option, missing value, bad choice) print one line, not a framed box.

    Typer frames click's usage errors in a multi-line rich panel; in a log or a pipe that is five
    lines for one sentence. Running click in non-standalone mode hands the errors to us.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click_exceptions.UsageError as exc:
            where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
            message = exc.format_message().rstrip(".")
            err_console.print(f"[bold red]Error:[/] {message}{where}.", highlight=False, soft_wrap=True, markup=True)
            sys.exit(exc.exit_code)
        except click_exceptions.ClickException as exc:
            err_console.print(f"[bold red]Error:[/] {exc.format_message()}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        except (click_exceptions.Abort, typer.Abort):
            err_console.print("Aborted.")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    name="unlearnbench",
    cls=_OneLineErrors,
    help="Machine-unlearning and adversarial-robustness evaluation for image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


def fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def handle_errors(fn: F) -> F:
    """User errors become one sentence on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Typer parses "nan" and "inf" as floats; no option of ours means anything by them.
        for key, value in kwargs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise fail(f"--{key.replace('_', '-')} must be a finite number, not {value}.")
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def check_outputs(*outputs: tuple[str, Path | None, bool], inputs: tuple[Path | str | None, ...] = ()) -> None:
    """Probe every output ``(option, path, is_folder)`` before the work starts (see ``check_writable``)."""
    from unlearnbench.core.io import check_writable

    for option, path, folder in outputs:
        if path is not None:
            check_writable(path, inputs=inputs, folder=folder, option=option)


def setup_output(quiet: bool, verbose: bool = False) -> None:
    progress.set_enabled(not quiet)
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def build_config(cls: type[C], config_file: Path | None, sets: list[str] | None, base: dict | None = None, **cli: Any) -> C:
    """Precedence: recipe/preset ``base`` < YAML file < ``--set`` < explicit CLI options."""
    data: dict[str, Any] = dict(base or {})
    if config_file is not None:
        data.update(load_yaml(config_file))
    data.update(parse_overrides(sets or []))
    data.update({k: v for k, v in cli.items() if v is not None})
    return from_dict(cls, data)


# Reusable option declarations keep flags spelled the same across commands.
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars (for CI and scripts).")
DataRootOpt = typer.Option(None, "--data-root", envvar="UNLEARNBENCH_DATA", help="Folder holding dataset files.")
DownloadOpt = typer.Option(False, "--download", help="Download missing dataset files (never by default).")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA if present), cpu or cuda[:N].")
TrackingOpt = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store (default sqlite:///mlflow.db).")
ExperimentOpt = typer.Option("unlearnbench", "--experiment", help="MLflow experiment name.")
NoTrackOpt = typer.Option(False, "--no-track", help="Do not log to MLflow.")
ConfigOpt = typer.Option(None, "--config", help="YAML file of config keys.")
SetOpt = typer.Option(None, "--set", help="Override one config key: --set lr=0.01 (repeatable).")

# Which data a run uses, and the protocol checks' overrides (see unlearnbench.core.protocol).
SubsetOpt = typer.Option(
    None, "--subset", help="Use N training images (seeded, stratified, cut before the train/val split; 0 = all). "
    "Commands that read a checkpoint default to the checkpoint's own.")
PerClassOpt = typer.Option(None, "--per-class", help="Use N training images per class (seeded; 0 = all); as --subset.")
AllowDataMismatchOpt = typer.Option(
    False, "--allow-data-mismatch", help="Go on when the data differs from the checkpoint's data fingerprint "
    "(recorded in the run).")
AllowReferenceMismatchOpt = typer.Option(
    False, "--allow-reference-mismatch", help="Go on when the reference is not this run's retrain (other forget "
    "set, split seed, data or architecture, or not a retrain; recorded in the run).")


def data_source(data_root: Path | None, download: bool, subset: int | None = None, per_class: int | None = None,
                image_size: int | None = None):
    """The DataSource of a command's data options (validated there: one sentence per mistake)."""
    from unlearnbench.core.data import DataSource

    return DataSource.from_env(data_root, download, subset=subset, per_class=per_class, image_size=image_size)
