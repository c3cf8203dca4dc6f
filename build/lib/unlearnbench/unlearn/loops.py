"""The epoch loop every iterative method composes: phases over sets, masks, extra loss terms.

An epoch is a list of :class:`Phase` objects run in order (random labelling: a forget phase,
then a retain phase; fine-tuning: one retain phase). Each step computes the phase's loss, adds
the extra terms (e.g. an ℓ1 penalty), and takes one optimizer step through a :class:`Stepper`,
which enforces an optional elementwise mask.

Masks — "frozen means bit-identical". A mask marks which weights may change (the SalUn saliency
mask, the fixed ``--prune`` mask, or both). Masking gradients alone is not enough: SGD's weight
decay and momentum still move masked weights (SalUn issue #32), and so does Adam's moment state.
Per-element weight decay is not expressible with parameter groups, so the Stepper uses a
*restore/zero* strategy: it snapshots the frozen entries once, masks their gradients before each
step, and after each step copies the snapshot back (``torch.where``, an exact copy, so frozen
weights are bit-identical however many steps run) and zeroes their optimizer state (momentum,
Adam moments) so nothing accumulates there. This is the hard constraint θ = m⊙θ' + (1−m)⊙θ₀
of SalUn's equation and of Unlearn-Saliency PR #33; the paper-era code only masked gradients.
BatchNorm running statistics are buffers, not weights, and still adapt (as in the reference).

``grad_mask`` is the paper-era alternative (SalUn ``mask_mode: gradient``): only the gradients
of its False entries are zeroed, so weight decay and momentum still move them, exactly as
Unlearn-Saliency's ``RL.py`` did before PR #33 when it produced the published numbers. A pruning
mask is always enforced exactly (pruned weights must stay zero), whichever mode SalUn uses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from unlearnbench.core.data import DatasetInfo, Loader, TensorSet
from unlearnbench.core.errors import UserError
from unlearnbench.core.progress import count_images, task
from unlearnbench.core.runtime import model_device
from unlearnbench.core.train import accuracy, autocast
from unlearnbench.unlearn.base import Mask, RetainTransform

log = logging.getLogger(__name__)

# loss(model, x, y, epoch) -> scalar; the epoch lets a loss follow a schedule.
PhaseLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]
# term(model, epoch) -> scalar added to every step's loss (an ℓ1 penalty, say).
ExtraTerm = Callable[[nn.Module, int], torch.Tensor]


class UnlearningDiverged(UserError):
    """The unlearning loss or the weights became NaN/inf (the fix: a smaller learning rate)."""


@dataclass
class Phase:
    """One pass over ``data`` within an epoch."""

    data: TensorSet
    loss: PhaseLoss
    batch_size: int
    name: str = ""
    shuffle: bool = True
    augment: DatasetInfo | None = None
    # Applied to each batch before the loss: the adversarial retain transform of --adv-retain.
    transform: RetainTransform | None = None
    # Per-batch relabelling (random labels), given the batch labels and the generator.
    relabel: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None


def make_optimizer(
    model: nn.Module,
    kind: str = "sgd",
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD (momentum 0.9, wd 5e-4 by default, as in the SalUn/Sparse wrapper) or Adam."""
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov and momentum > 0
        )
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {kind!r}")


class Stepper:
    """Zero grads, backward, mask, step, restore frozen entries, advance the lr schedule.

    ``schedule(step) -> factor`` multiplies each param group's initial lr. ``mask`` freezes its
    False entries exactly; ``grad_mask`` only zeroes their gradients (paper-era SalUn).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        mask: Mask | None = None,
        grad_mask: Mask | None = None,
        schedule: Callable[[int], float] | None = None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.steps = 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.frozen: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = [
            (p, keep, p.detach().clone()) for p, keep in _partial_masks(model, mask)
        ]
        self.grad_only: list[tuple[torch.nn.Parameter, torch.Tensor]] = _partial_masks(model, grad_mask)
        self._apply_schedule()

    def _apply_schedule(self) -> None:
        if self.schedule is not None:
            factor = self.schedule(self.steps)
            for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                g["lr"] = base * factor

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for p, keep in [*((p, k) for p, k, _ in self.frozen), *self.grad_only]:
            if p.grad is not None:
                p.grad.mul_(keep)
        self.optimizer.step()
        self.restore()
        self.steps += 1
        self._apply_schedule()

    @torch.no_grad()
    def restore(self) -> None:
        """Copy frozen entries back exactly and clear their optimizer state."""
        for p, keep, p0 in self.frozen:
            p.copy_(torch.where(keep, p, p0))
            for value in self.optimizer.state.get(p, {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.mul_(keep)


def _partial_masks(model: nn.Module, mask: Mask | None) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """(parameter, bool mask) for every masked parameter with at least one False entry."""
    if not mask:
        return []
    params = dict(model.named_parameters())
    unknown = sorted(set(mask) - set(params))
    if unknown:
        raise ValueError(f"mask names parameters the model lacks: {unknown[:3]}")
    out = []
    for name, keep in mask.items():
        p = params[name]
        keep = keep.to(device=p.device, dtype=torch.bool)
        if keep.shape != p.shape:
            raise ValueError(f"mask for {name} has shape {tuple(keep.shape)}, not {tuple(p.shape)}")
        if not bool(keep.all()):
            out.append((p, keep))
    return out


@dataclass
class EpochRecord:
    epoch: int
    losses: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0


def run_epochs(
    model: nn.Module,
    phases: Sequence[Phase],
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    mask: Mask | None = None,
    grad_mask: Mask | None = None,
    extra_terms: Iterable[ExtraTerm] = (),
    schedule: Callable[[int], float] | None = None,
    phase_epochs: Callable[[Phase, int], bool] | None = None,
    epoch_end: Callable[[int, nn.Module], bool | None] | None = None,
    amp: bool = True,
    description: str = "unlearn",
    on_epoch: Callable[[EpochRecord, nn.Module], None] | None = None,
) -> list[EpochRecord]:
    """Train ``model`` in place for ``epochs`` epochs of ``phases``.

    ``phase_epochs(phase, epoch)`` may skip a phase in some epochs (SCRUB's max-steps);
    ``epoch_end(epoch, model)`` may return True to stop early. ``amp`` enables bf16 autocast on
    CUDA only. ``mask`` / ``grad_mask``: see :class:`Stepper`. Raises :class:`UnlearningDiverged`
    when an epoch's loss is not finite. ``on_epoch(record, model)`` (default: the hook installed with
    :func:`epoch_hook`, if any) sees each finished epoch, e.g. to log the loss and forget accuracy per epoch.
    """
    on_epoch = on_epoch or _EPOCH_HOOK.get("hook")
    device = model_device(model)
    terms = list(extra_terms)
    stepper = Stepper(model, optimizer, mask=mask, grad_mask=grad_mask, schedule=schedule)
    loaders = [
        Loader(ph.data, ph.batch_size, shuffle=ph.shuffle, augment=ph.augment, generator=generator)
        for ph in phases
    ]
    total = epochs * sum(len(ld) for ld in loaders)
    history: list[EpochRecord] = []
    with task(description, total, unit="steps") as bar:
        for epoch in range(epochs):
            model.train()
            record = EpochRecord(epoch + 1, lr=optimizer.param_groups[0]["lr"])
            images = 0
            for ph, loader in zip(phases, loaders, strict=True):
                if phase_epochs is not None and not phase_epochs(ph, epoch):
                    bar.advance(len(loader))
                    continue
                loss_sum = torch.zeros((), device=device)
                n = 0
                for x, y in loader:
                    if ph.relabel is not None:
                        y = ph.relabel(y, generator)
                    if ph.transform is not None:
                        x = ph.transform(model, x, y).detach()
                        model.train()
                    with autocast(device, amp):
                        loss = ph.loss(model, x, y, epoch)
                    for term in terms:
                        loss = loss + term(model, epoch)
                    stepper.step(loss)
                    loss_sum += loss.detach().float()
                    n += 1
                    images += len(x)
                    bar.advance()
                mean = loss_sum.item() / max(1, n)
                if not math.isfinite(mean):
                    raise UnlearningDiverged(
                        f"Unlearning diverged in epoch {epoch + 1} ({ph.name or 'phase'} loss {mean}); "
                        "lower the learning rate with --set lr=..."
                    )
                record.losses[ph.name or f"phase{len(record.losses)}"] = mean
            history.append(record)
            log.info("epoch %d: %s", epoch + 1, record)
            count_images(images)
            bar.report(f"epoch {epoch + 1}/{epochs} "
                       + " ".join(f"{k} loss {v:.3f}" for k, v in record.losses.items()), images=images)
            if on_epoch is not None:
                t_hook = time.perf_counter()
                on_epoch(record, model)
                _HOOK_SECONDS[0] += time.perf_counter() - t_hook
                model.train()
            if epoch_end is not None and epoch_end(epoch + 1, model):
                break
    model.eval()
    return history


_EPOCH_HOOK: dict[str, Callable[[EpochRecord, nn.Module], None]] = {}
_HOOK_SECONDS = [0.0]


def hook_seconds() -> float:
    """Seconds spent in epoch hooks so far in this process: ``unlearn.run`` leaves them out of
    the run time (RTE), since measuring the forget accuracy per epoch is not the method's work."""
    return _HOOK_SECONDS[0]


@contextlib.contextmanager
def epoch_hook(hook: Callable[[EpochRecord, nn.Module], None]) -> Iterator[None]:
    """Within the block, every :func:`run_epochs` calls ``hook(record, model)`` after each epoch
    (methods call ``run_epochs`` themselves, so the caller of a method cannot pass it down)."""
    previous = _EPOCH_HOOK.get("hook")
    _EPOCH_HOOK["hook"] = hook
    try:
        yield
    finally:
        if previous is None:
            _EPOCH_HOOK.pop("hook", None)
        else:
            _EPOCH_HOOK["hook"] = previous


@contextlib.contextmanager
def record_epochs(forget: TensorSet | None = None) -> Iterator[list[dict]]:
    """Within the block, collect one row per unlearning epoch: ``epoch``, ``lr``, ``loss/<phase>``
    and, given the forget set, ``forget_acc`` (%) after the epoch (the curves MLflow draws).
    The forget-accuracy pass is excluded from the method's run time (see :func:`hook_seconds`)."""
    history: list[dict] = []

    def hook(record: EpochRecord, model: nn.Module) -> None:
        row: dict = {"epoch": record.epoch, "lr": record.lr, **{f"loss/{k}": v for k, v in record.losses.items()}}
        if forget is not None and len(forget):
            row["forget_acc"] = accuracy(model, forget.to(model_device(model)))
        history.append(row)

    with epoch_hook(hook):
        yield history


def ce_loss(label_smoothing: float = 0.0) -> PhaseLoss:
    """Cross-entropy on the batch labels."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y, label_smoothing=label_smoothing)

    return loss


def draw_random_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator,
                       exclude_true: bool = False) -> torch.Tensor:
    """Random labels for the true labels ``y``.

    ``exclude_true=False``: uniform over all ``num_classes`` (SalUn's RL: ``torch.randint(0, C)``,
    so a share 1/C keeps its true label). ``exclude_true=True``: uniform over the C − 1 wrong
    classes (y + U{1..C−1} mod C), never the true label.
    """
    if exclude_true:
        if num_classes < 2:
            raise ValueError("wrong labels need at least two classes")
        shift = torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)
        return (y + shift) % num_classes
    return torch.randint(0, num_classes, y.shape, generator=generator).to(y.device)


def random_labels(num_classes: int, exclude_true: bool = False) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """A per-batch relabelling with :func:`draw_random_labels`."""

    def relabel(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return draw_random_labels(y, num_classes, generator, exclude_true)

    return relabel
