"""Shared CLI plumbing: the Typer app, error handling, consoles and option helpers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from unlearnbench.core import progress
from unlearnbench.core.config import from_dict, load_yaml, parse_overrides
from unlearnbench.core.errors import UserError

app = typer.Typer(
    name="unlearnbench",
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
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


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
