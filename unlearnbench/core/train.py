"""The training loop shared by original models, retrained references and adversarial training.

Fast path: data stays on the device as uint8, augmentation runs on the device in batches, and on
CUDA the loop uses bf16 autocast + channels_last (optionally ``torch.compile``).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.config import check_training, configclass
from unlearnbench.core.data import DatasetInfo, Loader, TensorSet
from unlearnbench.core.errors import ConfigError, TrainingDiverged
from unlearnbench.core.progress import count_images, task
from unlearnbench.core.runtime import eval_mode, model_device, resolve_device, seed_everything

log = logging.getLogger(__name__)


@configclass
class TrainConfig:
    """Hyperparameters of supervised training (SGD with momentum)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training for multistep
    gamma: float = 0.1
    warmup: float = 0.0  # fraction of all steps with linear warm-up
    label_smoothing: float = 0.0
    augment: bool = True
    amp: bool = True  # bf16 autocast on CUDA
    cpu_bf16: bool = False  # with amp, bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX): ~2x for ResNets
    channels_last: bool = True  # on CUDA, and on CPU together with cpu_bf16
    compile: bool = False
    # torch.compile's mode. "reduce-overhead" replays CUDA graphs on CUDA, where the eager loop is
    # CPU-launch-bound at batch 512; CPUs have no CUDA graphs.
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    keep_best: bool = True  # restore the best-validation weights at the end
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_training(self)
        if not 0 <= self.warmup < 1:
            raise ConfigError("warmup is a fraction of training in [0, 1).")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("label_smoothing must be in [0, 1).")
        if any(not 0 < m < 1 for m in self.milestones):
            raise ConfigError("milestones are fractions of training in (0, 1), e.g. 0.5,0.75.")


# Per-dataset defaults; the CIFAR one is the measured fast recipe from the design notes
# (93.8 % test accuracy for ResNet-18 in 40 epochs on one H100).
RECIPES: dict[str, dict] = {
    "digits": dict(epochs=30, batch_size=64, lr=0.05, weight_decay=5e-4),
    "synthetic": dict(epochs=15, batch_size=64, lr=0.05),
    "cifar": dict(
        epochs=40, batch_size=512, lr=0.2, nesterov=True, momentum=0.9, weight_decay=5e-4,
        warmup=1 / 15, schedule="cosine", label_smoothing=0.1, cpu_bf16=True,
    ),
    "default": dict(epochs=30, batch_size=128, lr=0.05),
}


def recipe_for(dataset: str) -> dict:
    key = "cifar" if dataset.startswith("cifar") or dataset == "svhn" else dataset
    return dict(RECIPES.get(key, RECIPES["default"]))


def lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step ``s`` (warm-up, then the schedule)."""
    warm = int(config.warmup * total_steps)
    marks = [int(m * total_steps) for m in config.milestones]

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.schedule == "cosine":
            t = (step - warm) / max(1, total_steps - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if config.schedule == "multistep":
            return config.gamma ** sum(step >= m for m in marks)
        return 1.0

    return f


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # The fused CUDA kernel updates all parameters in one launch: +19 % ResNet-18 steps/s on an H100.
    fused = model_device(model).type == "cuda"
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay,
        fused=fused or None,
    )


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU executes bf16 natively; elsewhere bf16 autocast is slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: torch.device, enabled: bool = True, cpu: bool = False):
    """bf16 autocast on CUDA (and, with ``cpu=True``, on CPUs with native bf16); else a no-op."""
    on = enabled and (device.type == "cuda" or (cpu and device.type == "cpu" and cpu_has_bf16()))
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=on)


@torch.no_grad()
def predict(model: nn.Module, data: TensorSet, batch_size: int = 1024, amp: bool = False) -> torch.Tensor:
    """Logits (float32, on the data's device) for every image; every module's mode restored."""
    device = model_device(model)
    with eval_mode(model):
        outs = []
        for x, _ in Loader(data.to(device), batch_size):
            with autocast(device, amp):
                outs.append(model(x).float())
        return torch.cat(outs)


def accuracy(model: nn.Module, data: TensorSet, batch_size: int = 1024) -> float:
    """Top-1 accuracy in percent."""
    if len(data) == 0:
        return float("nan")
    logits = predict(model, data, batch_size)
    return 100.0 * (logits.argmax(1) == data.y.to(logits.device)).float().mean().item()


@torch.no_grad()
def val_metrics(model: nn.Module, data: TensorSet, batch_size: int = 1024) -> tuple[float, float]:
    """Top-1 accuracy (%) and mean cross-entropy on ``data`` from one forward pass."""
    if len(data) == 0:
        return float("nan"), float("nan")
    logits = predict(model, data, batch_size)
    y = data.y.to(logits.device)
    return 100.0 * (logits.argmax(1) == y).float().mean().item(), F.cross_entropy(logits, y).item()


def improves(acc: float, loss: float, best_acc: float, best_loss: float) -> bool:
    """``keep_best``'s rule: higher validation accuracy wins; equal accuracy goes to the lower
    validation loss, and equal accuracy and loss to the later epoch.

    Why not "first epoch reaching the best accuracy": a small validation set's accuracy plateaus
    for many epochs, and the first epoch of the plateau is an under-fitted model (epoch 7 of 30
    on digits), which weakens every membership signal and makes retrains of the same data differ.
    """
    if math.isnan(best_acc):
        return True
    return acc > best_acc or (acc == best_acc and not loss > best_loss)


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = float("nan")
    best_val_loss: float = float("nan")
    seconds: float = 0.0


# A step hook can replace the loss computation (adversarial training plugs in here).
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def fit(
    model: nn.Module,
    train: TensorSet,
    val: TensorSet | None,
    info: DatasetInfo,
    config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    epoch_end: Callable[[int, dict, nn.Module], bool | None] | None = None,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place and return it (best-validation weights when ``keep_best``).

    ``epoch_end(epoch, record, model)`` may return True to stop early (used by the
    catastrophic-overfitting check of fast adversarial training).
    """
    device = resolve_device(config.device)
    gen = seed_everything(config.seed)
    model.to(device)
    cpu_bf16 = config.amp and config.cpu_bf16 and device.type == "cpu" and cpu_has_bf16()
    # channels_last pays off with cuDNN and with oneDNN's bf16 kernels, not with fp32 on CPU.
    nhwc = (device.type == "cuda" or cpu_bf16) and config.channels_last
    if nhwc:
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model, mode=config.compile_mode) if config.compile else model
    loader = Loader(
        train.to(device), config.batch_size, shuffle=True, augment=info if config.augment else None,
        drop_last=True, generator=gen, channels_last=nhwc,
    )
    total = config.epochs * len(loader)
    opt = make_optimizer(model, config)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(config, total))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if loss_fn is None:
        loss_fn = lambda m, x, y: criterion(m(x), y)  # noqa: E731
    result = TrainResult(model)
    best_state = None
    start = time.perf_counter()
    with task(description, total, unit="steps") as bar:
        for epoch in range(config.epochs):
            model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            n_seen = 0
            for x, y in loader:
                with autocast(device, config.amp, cpu=config.cpu_bf16):
                    loss = loss_fn(step_model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                # Accumulate on the device: a .item() per step would sync the GPU every batch.
                loss_sum += loss.detach().float() * len(y)
                n_seen += len(y)
                bar.advance()
            train_loss = loss_sum.item() / max(1, n_seen)
            if not math.isfinite(train_loss):
                raise TrainingDiverged(
                    f"Training diverged at epoch {epoch + 1} (loss {train_loss}); lower the learning rate with --lr."
                )
            record = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "lr": opt.param_groups[0]["lr"],
                "epoch_seconds": time.perf_counter() - t0,
            }
            if val is not None and len(val):
                record["val_acc"], record["val_loss"] = val_metrics(model, val)
                if config.keep_best and improves(record["val_acc"], record["val_loss"],
                                                 result.best_val_acc, result.best_val_loss):
                    result.best_val_acc, result.best_val_loss = record["val_acc"], record["val_loss"]
                    result.best_epoch = epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
            result.history.append(record)
            log.info("epoch %d: %s", epoch + 1, record)
            count_images(n_seen)
            bar.report(f"epoch {epoch + 1}/{config.epochs} loss {train_loss:.3f}"
                       + (f" val {record['val_acc']:.1f}%" if "val_acc" in record else ""), images=n_seen)
            if epoch_end is not None and epoch_end(epoch + 1, record, model):
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if nhwc:
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result
