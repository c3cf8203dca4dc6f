"""Checkpoints: a dict of ``state_dict`` + plain metadata, written atomically, loaded safely.

Loading always uses ``torch.load(weights_only=True)``: a checkpoint can only contain tensors and
plain Python containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.errors import CheckpointError
from unlearnbench.core.io import atomic_write
from unlearnbench.core.models import MODELS, Normalized, create_model, is_foreign

FORMAT = "unlearnbench-checkpoint-v1"
REQUIRED = ("model", "dataset", "num_classes", "in_channels", "image_size", "split_seed")


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None

    def build(self, device: torch.device | str = "cpu") -> nn.Module:
        """Create the architecture named in the metadata and load the weights strictly.

        A foreign model (``torchvision:NAME``, ``module.path:factory``; from ``unlearnbench import``
        or ``train --model``) is rebuilt by its factory; its normalisation comes with the weights.
        """
        name = self.meta["model"]
        if not is_foreign(name) and name not in MODELS:
            raise CheckpointError(f"Checkpoint {self._where()} uses model {name!r}, which is not installed.")
        model = create_model(name, self.meta["num_classes"], self.meta["in_channels"], self.meta["image_size"])
        load_weights(model, self.state_dict, self._where())
        return model.to(device).eval()

    def _where(self) -> str:
        return str(self.path) if self.path else "(in memory)"

    @property
    def task(self) -> str:
        """``classification`` or ``generation``: the metadata's, else the registered model's."""
        if "task" in self.meta:
            return str(self.meta["task"])
        name = str(self.meta["model"])
        if is_foreign(name) or name not in MODELS:
            return "classification"
        return str(MODELS.info(name).get("task", "classification"))

    def require_task(self, task: str, command: str) -> None:
        """One sentence (exit 2) when a command gets a checkpoint of the other task."""
        if self.task != task:
            what = {"generation": "a generation model (a conditional DDPM)", "classification": "a classifier"}
            raise CheckpointError(
                f"Checkpoint {self._where()} holds {what.get(self.task, self.task)} ({self.meta['model']}); "
                f"{command} needs {what.get(task, task)}."
            )


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with a one-sentence error for architecture mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shape:
        detail = f"{len(missing)} missing, {len(unexpected)} unexpected and {len(shape)} mis-shaped tensors"
        if shape:  # the most telling case first: usually a head with another class count
            k = shape[0]
            detail += f" (first mis-shaped: {k} is {_dims(state_dict[k])} in the file, {_dims(own[k])} in the model)"
        elif missing:
            detail += f" (first missing: {missing[0]})"
        else:
            detail += f" (first unexpected: {unexpected[0]})"
        raise CheckpointError(f"Checkpoint {where} does not fit this architecture: {detail}.")
    model.load_state_dict(state_dict, strict=True)


def _dims(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "a scalar"


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write atomically: a temp file in the same folder, then ``os.replace``."""
    path = Path(path)
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {missing}")
    payload = {
        "format": FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": _plain(meta),
    }
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    return path


def _plain(value: Any) -> Any:
    """Keep metadata loadable under weights_only: plain containers, numbers, strings, None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is corrupt or not an unlearnbench checkpoint ({first[:120]})."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state_dict" not in payload:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is not an unlearnbench checkpoint; create one with `unlearnbench train`, "
            "or convert a foreign one with `unlearnbench import`."
        )
    meta = payload.get("meta") or {}
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"Checkpoint {str(path)!r} lacks metadata {', '.join(missing)}; re-create it.")
    return Checkpoint(payload["state_dict"], meta, path)


# ----------------------------------------------------------------------------- foreign weights

# Where training scripts commonly keep the state dict inside a saved dict.
STATE_DICT_KEYS = ("state_dict", "model", "net", "model_state_dict")
# Wrappers that prefix every key: DataParallel/DDP (``module.``) and torch.compile (``_orig_mod.``).
STRIP_PREFIXES = ("module.", "_orig_mod.")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A foreign weights file's state dict, and where it came from (sha256, key, stripped prefixes).

    Accepts a plain ``state_dict``, a dict holding one under ``state_dict`` / ``model`` / ``net`` /
    ``model_state_dict``, or an unlearnbench checkpoint; strips ``module.`` and ``_orig_mod.``
    prefixes. Read with ``torch.load(weights_only=True)``: tensors and plain containers only.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {str(path)!r} does not exist.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch.save writes a zip archive; only then is "weights only" about pickled objects inside it.
        if zipfile.is_zipfile(path) and ("weights only" in str(exc).lower() or "weights_only" in str(exc)):
            raise CheckpointError(
                f"Weights file {str(path)!r} holds pickled Python objects, which are never loaded (a whole model "
                "saved with torch.save(model)?); save model.state_dict() instead."
            ) from None
        raise CheckpointError(f"Weights file {str(path)!r} is not a PyTorch weights file.") from None
    except Exception:  # a non-PyTorch file fails in many ways inside torch.load (KeyError, EOFError, ...)
        raise CheckpointError(f"Weights file {str(path)!r} is not a PyTorch weights file (torch.load cannot read it).") from None
    key = ""
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        payload, key = payload.get("state_dict"), "state_dict"
    elif isinstance(payload, dict) and not _is_state_dict(payload):
        key = next((k for k in STATE_DICT_KEYS if _is_state_dict(payload.get(k))), "")
        payload = payload.get(key) if key else None
    if not _is_state_dict(payload):
        raise CheckpointError(
            f"Weights file {str(path)!r} holds no state dict: expected a dict of tensors, or one under "
            f"{', '.join(STATE_DICT_KEYS)}."
        )
    stripped: list[str] = []
    out: dict[str, torch.Tensor] = {}
    for name, tensor in payload.items():
        changed = True
        while changed:
            changed = False
            for prefix in STRIP_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    changed = True
                    if prefix not in stripped:
                        stripped.append(prefix)
        if name in out:
            raise CheckpointError(f"Weights file {str(path)!r} holds {name!r} twice once prefixes are stripped.")
        out[name] = tensor
    return out, {"path": str(path.resolve()), "sha256": sha256_file(path), "key": key, "stripped": stripped}


def load_foreign_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """Load a foreign state dict strictly into ``model`` (into the wrapped model of a ``Normalized``)."""
    wrapped = isinstance(model, Normalized) and not any(k.startswith("normalize.") for k in state_dict)
    load_weights(model.model if wrapped else model, state_dict, where)
