"""Explicit seeds and devices: no hidden global state, no time-based seeds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from unlearnbench.core.errors import ConfigError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; anything else must name an available device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"Unknown device {device!r}; use auto, cpu or cuda[:N].") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Device {device!r} was requested but CUDA is not available; use --device cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"Device {device!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                          "device(s), numbered from 0.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"Device {device!r} was requested but MPS is not available; use --device cpu.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"Device {device!r} is not one this tool runs on ('meta' holds no weights); "
                          "use auto, cpu or cuda[:N].")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU generator derived from ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode inside; on exit every submodule gets its *own* ``training`` flag back.

    ``model.train(was_training)`` would not do: it sets every submodule to the top module's flag,
    so a model handed over in train mode with frozen (eval-mode) BatchNorm layers would come back
    with those layers updating their running statistics again.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in modes:
            m.training = flag


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, then restore the caller's count.

    CPU kernels split their reductions by thread, so the thread count changes the last bits of
    every sum, and over a training run those bits grow into different accuracies (one study gave
    RA 76.76 on the local executor and 79.87 on Ray, whose workers ran on another count). Pinning
    it per job makes a result depend on the job, not on the process (or Ray worker) running it.
    """
    if threads < 1:
        raise ConfigError(f"threads must be at least 1; got {threads}.")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
