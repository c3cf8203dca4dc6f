"""Checkpoints: a dict of ``state_dict`` + plain metadata, written atomically, loaded safely.

Loading always uses ``torch.load(weights_only=True)``: a checkpoint can only contain tensors and
plain Python containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.errors import CheckpointError
from unlearnbench.core.io import atomic_write
from unlearnbench.core.models import MODELS, ImageClassifier, create_model

FORMAT = "unlearnbench-checkpoint-v1"
REQUIRED = ("model", "dataset", "num_classes", "in_channels", "image_size", "split_seed")


@dataclass(frozen=True)
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None

    def build(self, device: torch.device | str = "cpu") -> ImageClassifier:
        """Create the architecture named in the metadata and load the weights strictly."""
        name = self.meta["model"]
        if name not in MODELS:
            raise CheckpointError(f"Checkpoint {self._where()} uses model {name!r}, which is not installed.")
        model = create_model(name, self.meta["num_classes"], self.meta["in_channels"], self.meta["image_size"])
        load_weights(model, self.state_dict, self._where())
        return model.to(device).eval()

    def _where(self) -> str:
        return str(self.path) if self.path else "(in memory)"


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """``load_state_dict(strict=True)`` with a one-sentence error for architecture mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and own[k].shape != state_dict[k].shape]
    if missing or unexpected or shape:
        detail = (
            f"{len(missing)} missing, {len(unexpected)} unexpected and {len(shape)} mis-shaped tensors"
            + (f" (first: {(missing + unexpected + shape)[0]})" if missing + unexpected + shape else "")
        )
        raise CheckpointError(f"Checkpoint {where} does not fit this architecture: {detail}.")
    model.load_state_dict(state_dict, strict=True)


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
            f"Checkpoint {str(path)!r} is not an unlearnbench checkpoint; create one with `unlearnbench train`."
        )
    meta = payload.get("meta") or {}
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"Checkpoint {str(path)!r} lacks metadata {', '.join(missing)}; re-create it.")
    return Checkpoint(payload["state_dict"], meta, path)
