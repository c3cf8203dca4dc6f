"""Checkpoints: a dict of ``state_dict`` + plain metadata, written atomically, loaded safely.

Loading always uses ``torch.load(weights_only=True)``: a checkpoint can only contain tensors and
plain Python containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.errors import CheckpointError
from unlearnbench.core.foreign import Normalized, is_foreign
from unlearnbench.core.io import atomic_write
from unlearnbench.core.models import MODELS, create_model

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
    """Load ``state_dict`` into ``model`` the way PyTorch does, with a one-sentence error naming
    the difference and its likely cause.

    PyTorch's own ``load_state_dict`` runs first, so each module upgrades its older state (a
    BatchNorm saved before PyTorch 0.4.1 has no ``num_batches_tracked``; the file's ``_metadata``
    versions, or their absence, tell the module so). Only what is still missing or unexpected
    after that upgrade, or shaped differently, is an error. Shapes are compared before anything
    is copied; on a missing/unexpected error the (fresh) model may hold part of the weights.
    """
    own = model.state_dict()
    shape = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if shape:
        raise CheckpointError(f"Checkpoint {where} does not fit this model: {_shape_cause(shape, state_dict, own)}.")
    result = model.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise CheckpointError(f"Checkpoint {where} does not fit this model: {_key_cause(missing, unexpected, own)}.")


def _shape_cause(shape: list[str], theirs: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> str:
    """The mis-shaped tensors, the first one's shapes, and what usually causes it."""
    k = shape[0]
    head = [n for n in shape if theirs[n].dim() in (1, 2) and own[n].dim() == theirs[n].dim()
            and theirs[n].shape[1:] == own[n].shape[1:]]
    last = [n for n in own if own[n].dim() == 2][-1:]  # the last linear weight: the classifier head
    detail = f"{len(shape)} tensor(s) are shaped differently (first: {k} is {_dims(theirs[k])} in the file, " \
             f"{_dims(own[k])} in the model)"
    if last and last[0] in head:
        n = last[0]
        return (f"{detail}; the classifier {n} has {theirs[n].shape[0]} outputs in the file and {own[n].shape[0]} "
                "in the model: the weights were trained for another number of classes (another dataset?)")
    if own[k].dim() == 4 and theirs[k].dim() == 4 and own[k].shape[1] != theirs[k].shape[1]:
        return (f"{detail}; the first convolution takes {theirs[k].shape[1]} channel(s) in the file and "
                f"{own[k].shape[1]} in the model: the weights were trained on images with another channel count")
    if own[k].dim() == 4 and theirs[k].dim() == 4 and own[k].shape[2:] != theirs[k].shape[2:]:
        return (f"{detail}; another kernel size, as between an ImageNet-style stem (7x7) and a CIFAR-style one "
                "(3x3): the weights belong to another variant of the architecture")
    if own[k].dim() != theirs[k].dim():
        return f"{detail}: the weights belong to another architecture; build the model the file was trained with"
    return f"{detail}: the weights belong to another width or variant of the architecture"


def _key_cause(missing: list[str], unexpected: list[str], own: dict[str, torch.Tensor]) -> str:
    """Name what differs after PyTorch's upgrade, and the likely cause."""
    detail = f"{len(missing)} of its {len(own)} tensors are missing from the file and {len(unexpected)} in the file " \
             "are unexpected"
    firsts = ", ".join(f"first {what}: {keys[0]}" for what, keys in (("missing", missing), ("unexpected", unexpected))
                       if keys)
    detail += f" ({firsts})"
    if missing and unexpected:
        prefix = _extra_prefix(own, unexpected)
        if prefix:
            return (f"{detail}; every file key carries an extra prefix {prefix!r}: strip it "
                    "(state = {k.removeprefix(PREFIX): v ...}) and save again")
        prefix = _extra_prefix(unexpected, [m for m in missing if not m.endswith("num_batches_tracked")])
        if prefix:
            return f"{detail}; every model key carries a prefix {prefix!r} that the file lacks: load into the inner model"
    if missing and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in missing):
        return f"{detail}; only BatchNorm statistics are missing: the file was saved without its buffers"
    if not missing:
        return f"{detail}; the file holds more than the model (extra heads or an EMA copy?): the weights belong to a " \
               "larger architecture"
    return f"{detail}: the weights belong to another architecture; build the model the file was trained with"


def _extra_prefix(names: Any, prefixed: list[str]) -> str:
    """The prefix P such that every key in ``prefixed`` is P + one of ``names``, if there is one."""
    want = set(names)
    if not prefixed:
        return ""
    unexpected = prefixed
    first = unexpected[0]
    for i in range(1, len(first)):
        if first[i - 1] == "." and first[i:] in want:
            prefix = first[:i]
            if all(u.startswith(prefix) and u[len(prefix):] in want for u in unexpected):
                return prefix
            return ""
    return ""


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
    except Exception as exc:  # noqa: BLE001 - a file that is not a checkpoint fails in torch.load in many ways
        # (UnpicklingError, RuntimeError, EOFError, BadZipFile, even IndexError on a short text file)
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
    if not isinstance(meta, dict):
        raise CheckpointError(f"Checkpoint {str(path)!r} has no metadata dict; re-create it.")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"Checkpoint {str(path)!r} lacks metadata {', '.join(missing)}; re-create it.")
    for key, kind, low in (("model", str, None), ("dataset", str, None), ("num_classes", int, 2),
                           ("in_channels", int, 1), ("image_size", int, 1), ("split_seed", int, 0)):
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (low is not None and value < low):
            raise CheckpointError(f"Checkpoint {str(path)!r} has a bad {key} in its metadata ({value!r}); re-create it.")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"Checkpoint {str(path)!r} holds no state dict of tensors; re-create it.")
    _check_finite(state, f"Checkpoint {str(path)!r}")
    return Checkpoint(state, meta, path)


def _check_finite(state: dict[str, torch.Tensor], where: str) -> None:
    """Every command that loads weights refuses NaN/inf ones: they would be evaluated, attacked and
    reported (0 % robust accuracy of nothing) as if they were a model."""
    from unlearnbench.core.foreign import nonfinite_tensors

    bad = nonfinite_tensors(state.items())
    if bad:
        raise CheckpointError(f"{where} holds non-finite weights (NaN or infinity) in {len(bad)} tensor(s), first "
                              f"{bad[0]}; it is not a usable model (a diverged training?).")


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

    Accepts a ``.safetensors`` file, a plain ``state_dict``, a dict holding one under
    ``state_dict`` / ``model`` / ``net`` / ``model_state_dict``, or an unlearnbench checkpoint;
    strips ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes, in the
    keys and in the per-module versions (``_metadata``) that PyTorch's upgrade of older state
    reads. ``torch.load(weights_only=True)``: tensors and plain containers only.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Weights file {str(path)!r} does not exist.")
    payload = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
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
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, tensor in payload.items():
        name = _strip(name, stripped)
        if name in out:
            raise CheckpointError(f"Weights file {str(path)!r} holds {name!r} twice once prefixes are stripped.")
        out[name] = tensor
    versions = getattr(payload, "_metadata", None)
    if versions is not None:  # keep the module versions, under the stripped names
        out._metadata = OrderedDict((_strip(k + ".", []).removesuffix(".") if k else k, v)  # type: ignore[attr-defined]
                                    for k, v in versions.items())
    _check_finite(out, f"Weights file {str(path)!r}")
    return out, {"path": str(path.resolve()), "sha256": sha256_file(path), "key": key, "stripped": stripped,
                 "format": "safetensors" if _is_safetensors(path) else "torch"}


def _strip(name: str, stripped: list[str]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                changed = True
                if prefix not in stripped:
                    stripped.append(prefix)
    return name


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: an 8-byte little-endian header length, then a JSON object."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover - a dependency; guarded for a broken install
        raise CheckpointError(f"Reading {str(path)!r} needs safetensors: pip install safetensors.") from None
    try:
        return dict(load_file(str(path), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"Weights file {str(path)!r} is not a readable safetensors file ({str(exc)[:120]}).") \
            from None


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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


def load_foreign_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], where: str) -> None:
    """Load a foreign state dict strictly into ``model`` (into the wrapped model of a ``Normalized``)."""
    wrapped = isinstance(model, Normalized) and not any(k.startswith("normalize.") for k in state_dict)
    load_weights(model.model if wrapped else model, state_dict, where)
