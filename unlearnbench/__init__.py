"""unlearnbench: machine-unlearning and adversarial-robustness evaluation for image classifiers.

The public Python API (``docs/api.md``); every name is imported on first use, so
``import unlearnbench`` stays light:

- ``UnlearnData.from_tensors / from_datasets / from_dataset``: your data, checked;
- ``evaluate(model, data, reference=...)`` → ``Report`` (``to_frame``, ``to_dict``, ``to_json``);
- ``unlearn(method, model, data, config)`` → result with ``.model`` and ``.seconds``;
- ``robust_accuracy(model, data, attack)`` and ``attack(model, images, labels, attack)``;
- ``load_model(path)`` / ``load_model("torchvision:resnet18", weights, num_classes=10)``;
- ``with_normalization(model, mean, std)``; ``log_report(report)`` to MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "UnlearnData": ("unlearnbench.core.data", "UnlearnData"),
    "Report": ("unlearnbench.eval.report", "Report"),
    "evaluate": ("unlearnbench.api", "evaluate"),
    "robust_accuracy": ("unlearnbench.api", "robust_accuracy"),
    "attack": ("unlearnbench.api", "attack"),
    "load_model": ("unlearnbench.api", "load_model"),
    "log_report": ("unlearnbench.api", "log_report"),
    "with_normalization": ("unlearnbench.core.foreign", "with_normalization"),
    # generation (conditional DDPMs, docs/generation.md)
    "sample": ("unlearnbench.core.diffusion", "sample"),
    "train_generator": ("unlearnbench.core.jobs", "train_generator"),
    "evaluate_generation": ("unlearnbench.eval.generation", "evaluate_generation"),
    # The unlearn sub-package is callable: unlearnbench.unlearn("salun", model, data).
    "unlearn": ("unlearnbench.unlearn", None),
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'unlearnbench' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
