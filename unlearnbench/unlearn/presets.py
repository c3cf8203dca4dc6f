"""Presets: published unlearning protocols as one name (method + data + forget spec + config).

Each preset is a YAML file shipped in ``unlearnbench/unlearn/presets/`` (the file name is the
preset name) whose comments cite where every hyperparameter comes from::

    summary: one line
    release: OPTML-Group/Unlearn-Saliency@9576623 (2023-10-11)  # the ONE reference release followed
    quirks: [...]             # that release's behaviours the preset reproduces (or not), one line each
    method: salun             # a registered method
    dataset: cifar10          # the dataset the protocol is defined on
    model: resnet18           # the architecture of the paper (informational)
    forget: random:0.1        # the forget spec
    prune: 0.95               # optional: --prune
    config: {lr: 0.013, ...}  # method config keys (validated when the preset loads)

``unlearnbench unlearn --preset NAME --checkpoint orig.pt`` applies one; ``--forget``, ``--config``
and ``--set`` still override it. A preset follows one named release of the reference code
(``release``: ``owner/repo@commit (date)``); a paper preset (any dataset but the embedded ones)
must name it, and ``ls presets`` and the logged run (param ``preset_release``) show it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnbench.core.config import from_dict, load_yaml
from unlearnbench.core.data import parse_forget_spec
from unlearnbench.core.registry import Registry
from unlearnbench.unlearn.base import METHODS

PRESET_DIR = Path(__file__).parent / "presets"
_KEYS = {"summary", "release", "quirks", "method", "dataset", "model", "forget", "prune", "config"}
RELEASE = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{7,40} \(\d{4}-\d{2}-\d{2}\)$")
EMBEDDED = ("digits", "synthetic")  # demo presets on the bundled data follow no paper release


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
    release: str = ""  # owner/repo@commit (date) of the reference code this preset follows
    quirks: tuple[str, ...] = ()


PRESETS: Registry[Preset] = Registry("presets")


def load_preset(path: Path) -> Preset:
    """Read and validate one preset file (method, forget spec and config keys must all exist)."""
    data = load_yaml(path, "Preset")
    unknown = sorted(set(data) - _KEYS)
    missing = sorted({"method", "dataset", "forget"} - set(data))
    if unknown or missing:
        raise ValueError(f"preset {path.name}: unknown keys {unknown}, missing keys {missing}")
    config = dict(data.get("config") or {})
    from_dict(METHODS.info(data["method"])["config"], config)  # a typo in a shipped preset fails loudly
    parse_forget_spec(str(data["forget"]))
    release = str(data.get("release") or "")
    if release and not RELEASE.match(release):
        raise ValueError(f"preset {path.name}: release {release!r} is not 'owner/repo@commit (YYYY-MM-DD)'")
    if not release and data["dataset"] not in EMBEDDED:
        raise ValueError(f"preset {path.name}: a paper preset must name the release it follows (release: ...)")
    quirks = data.get("quirks") or []
    if not isinstance(quirks, list) or not all(isinstance(q, str) for q in quirks):
        raise ValueError(f"preset {path.name}: quirks must be a list of one-line strings")
    prune = data.get("prune")
    return Preset(
        name=path.stem, method=data["method"], dataset=data["dataset"], forget=str(data["forget"]),
        summary=str(data.get("summary", "")), model=data.get("model"),
        prune=None if prune is None else float(prune), config=config, release=release, quirks=tuple(quirks),
    )


def _register_builtin() -> None:
    import unlearnbench.unlearn  # noqa: F401  (registers the methods the presets name)

    for path in sorted(PRESET_DIR.glob("*.yaml")):
        p = load_preset(path)
        PRESETS.add(p.name, p, summary=p.summary, method=p.method, dataset=p.dataset, forget=p.forget,
                    release=p.release or "-")


_register_builtin()
