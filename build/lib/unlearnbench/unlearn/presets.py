"""Presets: published unlearning protocols as one name (method + data + forget spec + config).

Each preset is a YAML file shipped in ``unlearnbench/unlearn/presets/`` (the file name is the
preset name) whose comments cite where every hyperparameter comes from::

    summary: one line
    method: salun             # a registered method
    dataset: cifar10          # the dataset the protocol is defined on
    model: resnet18           # the architecture of the paper (informational)
    forget: random:0.1        # the forget spec
    prune: 0.95               # optional: --prune
    config: {lr: 0.013, ...}  # method config keys (validated when the preset loads)

``unlearnbench unlearn --preset NAME --checkpoint orig.pt`` applies one; ``--forget``, ``--config``
and ``--set`` still override it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from unlearnbench.core.config import from_dict
from unlearnbench.core.data import parse_forget_spec
from unlearnbench.core.registry import Registry
from unlearnbench.unlearn.base import METHODS

PRESET_DIR = Path(__file__).parent / "presets"
_KEYS = {"summary", "method", "dataset", "model", "forget", "prune", "config"}


@dataclass(frozen=True)
class Preset:
    name: str
    method: str
    dataset: str
    forget: str
    summary: str = ""
    model: str | None = None
    prune: float | None = None
    config: dict[str, Any] = field(default_factory=dict)


PRESETS: Registry[Preset] = Registry("presets")


def load_preset(path: Path) -> Preset:
    """Read and validate one preset file (method, forget spec and config keys must all exist)."""
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - _KEYS)
    missing = sorted({"method", "dataset", "forget"} - set(data))
    if unknown or missing:
        raise ValueError(f"preset {path.name}: unknown keys {unknown}, missing keys {missing}")
    config = dict(data.get("config") or {})
    from_dict(METHODS.info(data["method"])["config"], config)  # a typo in a shipped preset fails loudly
    parse_forget_spec(str(data["forget"]))
    prune = data.get("prune")
    return Preset(
        name=path.stem, method=data["method"], dataset=data["dataset"], forget=str(data["forget"]),
        summary=str(data.get("summary", "")), model=data.get("model"),
        prune=None if prune is None else float(prune), config=config,
    )


def _register_builtin() -> None:
    import unlearnbench.unlearn  # noqa: F401  (registers the methods the presets name)

    for path in sorted(PRESET_DIR.glob("*.yaml")):
        p = load_preset(path)
        PRESETS.add(p.name, p, summary=p.summary, method=p.method, dataset=p.dataset, forget=p.forget)


_register_builtin()
