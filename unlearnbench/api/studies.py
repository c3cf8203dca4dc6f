"""Studies and reports: ``load_study`` (checked in full before anything trains), ``run_study``,
``build_report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_study(path_or_name: str | Path, **overrides: Any) -> Any:
    """A study (YAML file or shipped name), checked in full before anything trains."""
    from unlearnbench.study import load_study as _load_study

    return _load_study(path_or_name, **overrides)


def run_study(config: Any, **kwargs: Any) -> Any:
    """Run or resume a study (``tracking_uri``, ``executor``, ``work_dir``, ``source``, ``new``,
    ``study_file``, ``on_event``); see ``study.run``."""
    from unlearnbench.study import run_study as _run_study

    return _run_study(config, **kwargs)


def build_report(experiment: str, out: str | Path = "reports", **kwargs: Any) -> Any:
    """Write the HTML and Markdown report of an experiment's runs (``tracking_uri``,
    ``parent_run_id``, ``tolerance``, ``log_to_mlflow``); see ``reports.render``."""
    from unlearnbench.reports import build_report as _build_report

    return _build_report(experiment, out, **kwargs)

