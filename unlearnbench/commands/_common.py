"""Shared CLI plumbing: the Typer app, error handling, consoles and option helpers."""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click as typer._click; its usage errors are that copy's classes
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on the real click
    from click import exceptions as click_exceptions

from unlearnbench.api import UserError
from unlearnbench.core import progress
from unlearnbench.core.config import from_dict, load_yaml, parse_overrides


class _OneLineErrors(TyperGroup):
    """Usage mistakes (unknown option, missing value, bad choice) print one line, not a framed box.

    Typer frames click's usage errors in a multi-line rich panel; in a log or a pipe that is five
    lines for one sentence. Running click in non-standalone mode hands the errors to us.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from unlearnbench._stdio import Watched, ensure_streams

        ensure_streams()
        saved = sys.stdout
        sys.stdout = Watched(saved)  # type: ignore[assignment]
        try:
            try:
                code = self._one_line_main(args, prog_name, complete_var, **extra)
            except SystemExit as exc:  # a command's own sys.exit
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            code = finish_stdout(code)
        finally:
            sys.stdout = saved
        sys.exit(code)

    def _one_line_main(self, args: Any, prog_name: str | None, complete_var: str | None, **extra: Any) -> int:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message(), err=True)
            return exc.exit_code
        except click_exceptions.UsageError as exc:
            where = f"; see `{exc.ctx.command_path} --help`" if exc.ctx is not None else ""
            message = exc.format_message().rstrip(".")
            err_console.print(f"[bold red]Error:[/] {message}{where}.", highlight=False, soft_wrap=True, markup=True)
            return exc.exit_code
        except click_exceptions.ClickException as exc:
            err_console.print(f"[bold red]Error:[/] {exc.format_message()}", highlight=False, soft_wrap=True)
            return exc.exit_code
        except typer.Abort:
            err_console.print("Aborted.")
            return 1
        except Exception as exc:  # the last line of defence: see internal_error
            stdout_code = stdout_failure(exc)
            return stdout_code if stdout_code is not None else internal_error(exc)
        return rv if isinstance(rv, int) else 0


# The exit status of an exception that escaped a command: EX_SOFTWARE from sysexits.h, "an internal
# software error". The test suite fails any run that ends with it (tests/conftest.py).
EXIT_INTERNAL = 70
# A reader that closed the pipe early (`unlearnbench ls | head -1`): what the shell reports for a
# tool that SIGPIPE ended, 128 + 13, and nothing on stderr.
EXIT_BROKEN_PIPE = 141


def internal_error(exc: BaseException) -> int:
    """One line on stderr — ``internal error (a bug in unlearnbench): TYPE: message — full traceback in
    FILE`` — with the traceback in a file (``$UNLEARNBENCH_CRASH_DIR``, else the temp folder)."""
    import datetime
    import os
    import tempfile
    import traceback

    folder = os.environ.get("UNLEARNBENCH_CRASH_DIR") or tempfile.gettempdir()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    where = "(not written)"
    try:
        os.makedirs(folder, exist_ok=True)
        fd, where = tempfile.mkstemp(dir=folder, prefix=f"unlearnbench-crash-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(f"argv: {sys.argv!r}\n\n{text}")
    except OSError:
        sys.stderr.write(text)  # no file to point at: the traceback itself is the only record
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    line = f"internal error (a bug in unlearnbench): {type(exc).__name__}: {first} — full traceback in {where}"
    try:
        err_console.print(line, highlight=False, soft_wrap=True, markup=False)
    except Exception:  # noqa: BLE001 - a broken stderr must not hide the exit status
        pass
    return EXIT_INTERNAL


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush of unwritten output cannot fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


def stdout_failure(exc: BaseException) -> int | None:
    """The exit status for an exception that is standard output failing (closed pipe, full disk),
    None for any other exception."""
    failure = getattr(sys.stdout, "failure", None)
    if failure is None or not isinstance(exc, OSError):
        return None
    return _report_stdout(failure)


def _report_stdout(exc: OSError) -> int:
    _silence_stdout()
    if _broken_pipe(exc):
        return EXIT_BROKEN_PIPE
    try:
        err_console.print(f"Error: cannot write to standard output ({exc.strerror or type(exc).__name__}); "
                          "the output is incomplete.", highlight=False, soft_wrap=True, markup=False)
    except Exception:  # noqa: BLE001
        pass
    return 1


def finish_stdout(code: int) -> int:
    """Flush standard output now, while a failure can still be said in one line and change the
    exit status (a full disk behind ``> file`` shows only at the final flush)."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        return _report_stdout(exc)
    except ValueError:  # closed by the caller
        return code
    # A failure a command (or click, which exits 1 on EPIPE) caught and went on after.
    failure = getattr(sys.stdout, "failure", None)
    if failure is not None and (code == 0 or _broken_pipe(failure)):
        return _report_stdout(failure)
    return code


def _broken_pipe(exc: OSError) -> bool:
    import errno

    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


app = typer.Typer(
    name="unlearnbench",
    cls=_OneLineErrors,
    help="Machine-unlearning and adversarial-robustness evaluation for image classifiers.",
    no_args_is_help=True,
    # Plain click help: it wraps the help text and never cuts an option name, at 80 columns and
    # in a pipe (rich's option table shrank long names to "--allow-reference-misma…").
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
# Wide enough for any row: piped output and log files get whole names, never "bad_teach…".
PIPE_WIDTH = 100_000


class TableConsole(Console):
    """A console whose tables never cut a name or a URL short.

    Rich shrinks a table to the terminal and ends every word that does not fit with "…". Here a
    table goes out unshrunk when stdout is not a terminal (logs, pipes, ``| grep``), and as one
    ``column: value`` block per row when the terminal is narrower than the table's longest words.
    """

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if len(objects) == 1 and isinstance(objects[0], Table):
            self._print_table(objects[0], **kwargs)
        else:
            super().print(*objects, **kwargs)

    def _print_table(self, table: Table, **kwargs: Any) -> None:
        if not self.is_terminal:
            saved = self._width
            self._width = PIPE_WIDTH
            try:
                super().print(table, crop=False, **kwargs)
            finally:
                self._width = saved
            return
        need = Measurement.get(self, self.options.update(width=PIPE_WIDTH), table).minimum
        if need <= self.width:
            super().print(table, **kwargs)
            return
        super().print(table_records(table), highlight=False, soft_wrap=True)


def table_cells(table: Table) -> tuple[list[str], list[list[str]]]:
    """A rich table's headers and rows as plain strings (markup stripped)."""
    from rich.text import Text

    def plain(cell: Any) -> str:
        if isinstance(cell, Text):
            return cell.plain
        return Text.from_markup(str(cell)).plain if isinstance(cell, str) else str(cell)

    headers = [plain(c.header) for c in table.columns]
    columns = [[plain(cell) for cell in c.cells] for c in table.columns]
    return headers, [list(r) for r in zip(*columns, strict=True)] if columns else []


def table_records(table: Table) -> str:
    """The narrow-terminal layout: the title, then per row ``header: value`` lines."""
    headers, rows = table_cells(table)
    title = table.title.plain if hasattr(table.title, "plain") else (table.title or "")
    out = [str(title)] if title else []
    for row in rows:
        out.append("")
        out.append(f"{headers[0]}: {row[0]}")
        out.extend(f"  {h}: {v}" for h, v in zip(headers[1:], row[1:], strict=True) if v.strip())
    return "\n".join(out)


def print_json(data: Any) -> None:
    """Machine-readable output: JSON on stdout, nothing else there."""
    sys.stdout.write(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


def json_safe(data: Any) -> Any:
    """NaN/inf become null (strict JSON, readable by jq); tuples lists; other objects strings."""
    import math

    if isinstance(data, dict):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in data]
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if data is None or isinstance(data, (str, int, bool)):
        return data
    if isinstance(data, type):
        return data.__name__
    return str(data)


console = TableConsole()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


def fail(message: str) -> typer.Exit:
    from rich.markup import escape

    # escaped: a message may quote brackets (pip install 'unlearnbench[ray]', a list repr)
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def handle_errors(fn: F) -> F:
    """User errors become one sentence on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Typer parses "nan" and "inf" as floats; no option of ours means anything by them.
        from unlearnbench.core.boundary import check_named

        for key, value in kwargs.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise fail(f"--{key.replace('_', '-')} must be a finite number, not {value}.")
        try:
            for key, value in kwargs.items():  # seeds, devices, run times: checked where they enter
                check_named(key, value, f"--{key.replace('_', '-')}")
            return fn(*args, **kwargs)
        except UserError as exc:
            raise fail(str(exc)) from None
        except OSError as exc:
            # A file the user named that the system will not let us use (a name too long, a
            # symlink loop, no permission): their environment, not a bug; stdout failures and
            # errors without a file name go on to the last line of defence.
            if exc.filename is None or getattr(sys.stdout, "failure", None) is not None:
                raise
            name = str(exc.filename)
            raise fail(f"Cannot use {name[:80]!r}{'…' if len(name) > 80 else ''}: "
                       f"{exc.strerror or type(exc).__name__}.") from None
        except KeyboardInterrupt:
            err_console.print("Interrupted.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def check_outputs(*outputs: tuple[str, Path | None, bool], inputs: tuple[Path | str | None, ...] = (),
                  specs: tuple[Any, ...] = (), store: str | None | bool = False) -> None:
    """A command's whole file boundary, before the work: every output ``(option, path, is_folder)``
    against every input path, every ``indices:FILE`` in ``specs`` and the MLflow store's SQLite file
    (``store``: the --tracking-uri of a command that tracks, None for the default; False: none)."""
    from unlearnbench.core.boundary import declare

    if any(isinstance(s, str) for s in specs):
        from unlearnbench.core.data.splits import parse_forget_spec

        for spec in specs:  # an empty --exclude '' must not quietly train an original (parsed ones are checked)
            if isinstance(spec, str):
                parse_forget_spec(spec)
    extra: list[Path] = []
    if store is not False:
        from unlearnbench.eval.tracking import resolve_uri, sqlite_file

        db = sqlite_file(resolve_uri(store or None))
        extra = [db] if db is not None else []
    declare(inputs=(*inputs, *extra), outputs=outputs, specs=specs)


class _Once(logging.Filter):
    """Let each distinct warning through once: a study's 40 jobs repeat the same warning."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def setup_output(quiet: bool, verbose: bool = False, threads: int | None = None) -> None:
    """Progress on stderr unless ``quiet`` (never results: those go to stdout regardless);
    library warnings, both ``logging`` and ``warnings``, shown once each; ``threads``: the
    intra-op thread count (--threads; without it the default set at start-up, see
    ``core.cpus.default_threads_env``)."""
    if threads is not None:
        import torch

        if threads < 1:
            raise UserError(f"--threads must be at least 1; got {threads}.")
        torch.set_num_threads(threads)
    progress.set_enabled(not quiet)
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Once())
    # Python shows a warning once per code location; once per message is what a reader wants
    # when every job of a study raises the same one.
    _once_per_message()


def _once_per_message() -> None:
    seen: set[str] = set()
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        key = f"{category.__name__}: {message}"
        if key in seen:
            return
        seen.add(key)
        show(message, category, filename, lineno, file, line)

    if not getattr(warnings.showwarning, "_unlearnbench_once", False):
        showwarning._unlearnbench_once = True  # type: ignore[attr-defined]
        warnings.showwarning = showwarning


def build_config(cls: type[C], config_file: Path | None, sets: list[str] | None, base: dict | None = None, **cli: Any) -> C:
    """Precedence: recipe/preset ``base`` < option defaults < YAML file < ``--set`` < explicit options.

    An option left at its default does not override ``--set`` or the file (``--set device=cpu``
    beats the default ``--device auto``); a ``--set key=…`` that contradicts an option given on
    the command line is refused rather than silently losing to it.
    """
    given = _explicit_options()
    data: dict[str, Any] = dict(base or {})
    data.update({k: v for k, v in cli.items() if v is not None and k not in given})
    if config_file is not None:
        data.update(load_yaml(config_file))
    overrides = parse_overrides(sets or [])
    data.update(overrides)
    for key, value in cli.items():
        if value is None or key not in given:
            continue
        if key in overrides:
            import typing

            from unlearnbench.core.config import _coerce

            hint = typing.get_type_hints(cls).get(key, Any)
            if _coerce(value, hint, key) != _coerce(overrides[key], hint, key):
                option = given[key]
                raise UserError(f"--set {key}={overrides[key]} contradicts {option} {value}; give one of them.")
        data[key] = value
    return from_dict(cls, data)


def _explicit_options() -> dict[str, str]:
    """Parameter name → option spelling of the options given on this command line (or in the
    environment); outside a CLI call every option counts as given (the old precedence)."""
    try:
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - a typer on the real click
        from click.core import ParameterSource, get_current_context  # type: ignore[no-redef]
    ctx = get_current_context(silent=True)
    if ctx is None:
        return _AllGiven()
    out = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None):
            out[param.name] = (param.opts or [param.name])[0]
    return out


class _AllGiven(dict):
    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> str:
        return f"--{key.replace('_', '-')}"


# Reusable option declarations keep flags spelled the same across commands.
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress (bars or log lines); results are still printed.")
DataRootOpt = typer.Option(None, "--data-root", envvar="UNLEARNBENCH_DATA", help="Folder holding dataset files.")
DownloadOpt = typer.Option(False, "--download", help="Download missing dataset files (never by default).")
DeviceOpt = typer.Option("auto", "--device", help="auto (CUDA if present), cpu or cuda[:N].")
TrackingOpt = typer.Option(None, "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow store (default sqlite:///mlflow.db).")
ExperimentOpt = typer.Option("unlearnbench", "--experiment", help="MLflow experiment name.")
NoTrackOpt = typer.Option(False, "--no-track", help="Do not log to MLflow.")
LogModelOpt = typer.Option(False, "--log-model", help="Also log the model as an MLflow PyTorch model (signature, input example).")
SystemMetricsOpt = typer.Option(False, "--system-metrics", help="Sample CPU, GPU and memory use into the MLflow run (MLflow's sampler).")
ConfigOpt = typer.Option(None, "--config", help="YAML file of config keys.")
ThreadsOpt = typer.Option(
    None, "--threads", help="Intra-op CPU threads (default: the CPUs this process may use: its affinity and "
    "cgroup quota, or OMP_NUM_THREADS when set). It changes CPU results in the last bits.")
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
