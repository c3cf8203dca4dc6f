"""The public Python API, the front door: every command of the CLI calls these functions.

Two halves (see ``docs/api.md`` and ``docs/architecture.md``):

- **Models in memory** (a user's own ``nn.Module`` and data in, numbers and a ``Report`` out):
  ``evaluate``, ``robust_accuracy``, ``attack``, ``load_model``, ``log_report``. Each checks its
  inputs first, the same way; a mistake is one sentence (a ``UserError``).
- **Checkpoints and studies on disk** (what the commands run): ``check_train``/``train``,
  ``check_unlearn``/``run_unlearn``/``unlearn_checkpoint``, ``evaluate_checkpoint``,
  ``check_attack``/``attack_checkpoint``, ``load_study``/``run_study``, ``build_report``. A
  ``check_*`` function checks everything that needs no data and returns the checked request the
  run function takes, so a command fails before its expensive work and parses its input once.
- **The environment** (what ``ls``, ``doctor``, ``ui`` and ``shadow info`` show): torch-free where
  the command is (``ls`` reads a registry snapshot).

One module per concern: ``api.models`` (data and models), ``api.unlearning``, ``api.evaluation``
(evaluation and attacks), ``api.studies`` (studies and reports), ``api.environment`` (listing,
doctor, shadow pools, the UI). Every name is imported on first use (PEP 562), so
``import unlearnbench.api`` imports no torch and a torch-free command stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module of this package that defines it
_WHERE = {
    **dict.fromkeys(("load_model", "check_train", "check_prune", "train", "import_model", "train_shadow_pool"),
                    "models"),
    **dict.fromkeys(("check_model", "evaluate", "robust_accuracy", "attack", "log_report", "evaluate_checkpoint",
                     "evaluate_model", "check_attack", "load_attack_target", "attack_checkpoint"), "evaluation"),
    **dict.fromkeys(("check_unlearn", "run_unlearn", "unlearn_checkpoint"), "unlearning"),
    **dict.fromkeys(("load_study", "study_file", "run_study", "study_report_folder", "check_study_executor", "build_report",
                     "summary_tables", "expected_tables"), "studies"),
    **dict.fromkeys(("list_registries", "describe_entry", "doctor_checks", "ui_command", "shadow_pool"),
                    "environment"),
}
# Names of the library that are part of the API as they are: the errors every function raises on
# bad input (one sentence each, all ``UserError``s: catch that) and the checkpoint file format.
_AS_IS = {
    **dict.fromkeys(("UserError", "ConfigError", "DataError", "ModelError", "UnknownNameError", "CheckpointError",
                     "OutputError", "InputError", "TrainingDiverged"), "unlearnbench.core.errors"),
    **dict.fromkeys(("save_checkpoint", "load_checkpoint"), "unlearnbench.core.checkpoint"),
}
__all__ = sorted([*_WHERE, *_AS_IS])


def __getattr__(name: str) -> Any:
    if name in _AS_IS:
        module = _AS_IS[name]
    elif name in _WHERE:
        module = f"{__name__}.{_WHERE[name]}"
    else:
        raise AttributeError(f"module 'unlearnbench.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__ (and monkeypatch.setattr sees a plain attribute)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
