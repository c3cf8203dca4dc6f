"""Adversarial-example generators for training loops (adversarial training, ``--adv-retain``).

These run inside a training step, so they are written for speed and for not disturbing training:

- they compute gradients with ``torch.autograd.grad`` w.r.t. the perturbation only, so parameter
  ``.grad`` buffers are untouched;
- they generate in eval mode (running BatchNorm statistics, no dropout, as TRADES and MART do)
  and restore every module's mode, so the attack does not update BN statistics;
- their random starts come from a private generator seeded once (``seed``), so the training
  loop's own random stream (shuffling, augmentation, dropout) is unchanged, and a run is
  reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.errors import ConfigError
from unlearnbench.robust.attacks import eval_mode
from unlearnbench.robust.threat import ThreatModel

Generator = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class _Noise:
    """Uniform / Gaussian noise from private generators (one per device, seeded with ``seed``).

    Drawing on the batch's own device avoids a host-to-device copy per training step (a copy
    from pageable memory would make the CPU wait for the GPU queue every step).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed)
        self._gens: dict[torch.device, torch.Generator] = {torch.device("cpu"): self.gen}

    def _gen(self, device: torch.device) -> torch.Generator:
        if device not in self._gens:
            self._gens[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._gens[device]

    def uniform(self, like: torch.Tensor, low: float, high: float) -> torch.Tensor:
        u = torch.rand(like.shape, generator=self._gen(like.device), device=like.device, dtype=like.dtype)
        return u * (high - low) + low

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self._gen(like.device), device=like.device, dtype=like.dtype)


def _flat_norm(d: torch.Tensor) -> torch.Tensor:
    return d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (d.dim() - 1)))


def project(delta: torch.Tensor, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Project ``delta`` onto the eps-ball and keep ``x + delta`` in [0, 1]."""
    if threat.norm == "Linf":
        delta = delta.clamp(-threat.eps, threat.eps)
    else:
        delta = delta * torch.clamp(threat.eps / _flat_norm(delta), max=1.0)
    return (x + delta).clamp(0.0, 1.0) - x


def ascent_step(grad: torch.Tensor, alpha: float, norm: str) -> torch.Tensor:
    """A step of length ``alpha`` up the gradient: its sign for Linf, its direction for L2."""
    return alpha * (grad.sign() if norm == "Linf" else grad / _flat_norm(grad))


def random_start(noise: _Noise, x: torch.Tensor, threat: ThreatModel, scale: float = 1.0) -> torch.Tensor:
    if threat.norm == "Linf":
        delta = noise.uniform(x, -scale * threat.eps, scale * threat.eps)
    else:
        d = noise.normal(x)
        r = noise.uniform(x[:, :1, :1, :1], 0.0, 1.0)  # radius fraction per point
        delta = d / _flat_norm(d) * r * scale * threat.eps
    return delta


def pgd_perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, *, steps: int,
                alpha: float, noise: _Noise | None, loss_fn=None, start: torch.Tensor | None = None) -> torch.Tensor:
    """PGD-k maximising ``loss_fn(logits, y)`` (cross-entropy by default); returns ``x_adv``.

    The start is ``start`` when given (already inside the ball), else a random point of the ball
    (``noise``), else ``x`` itself."""
    loss_fn = loss_fn or (lambda logits, target: F.cross_entropy(logits, target))
    x = x.detach()
    if start is not None:
        delta = start
    elif noise is not None:
        delta = project(random_start(noise, x, threat), x, threat)
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, [delta])
        delta = project(delta.detach() + ascent_step(grad, alpha, threat.norm), x, threat)
    return (x + delta).detach()


# Attacks that return their strongest example for *every* point: what an adversarial retain batch
# must be. Ensembles (AutoAttack), minimum-norm attacks (CW, DeepFool, FAB) and the other
# registered attacks return the clean image for each point they fail to break, so a robust model
# would be fine-tuned on clean retain images under an "adversarial" label.
RETAIN_ATTACKS = ("pgd", "fgsm", "apgd")


def check_retain_attack(name: str) -> None:
    """One-sentence ConfigError unless ``name`` is one of ``RETAIN_ATTACKS``."""
    if name in RETAIN_ATTACKS:
        return
    from unlearnbench.robust.attacks import ATTACKS

    kind = str(ATTACKS.info(name).get("kind", ""))  # an unknown name fails here, with the valid ones
    what = ("an ensemble" if kind.startswith("ensemble") else "a minimum-norm attack" if kind == "minimum-norm"
            else "an attack that")
    verb = "returns" if what == "an attack that" else "that returns"
    raise ConfigError(
        f"--adv-retain {name!r} is refused: it is {what} {verb} the clean image for every point it does not break, "
        f"so a robust model would be fine-tuned on clean retain images; use {', '.join(RETAIN_ATTACKS)}."
    )


def retain_attack(name: str, threat: ThreatModel, steps: int = 10, seed: int = 0) -> Generator:
    """A generator ``fn(model, x, y) -> x_adv`` for adversarial retain batches.

    Every point gets the attack's strongest example, broken or not: ``pgd``: PGD-``steps`` (random
    start, step 2.5·eps/steps) — the common adversarial-training choice; ``fgsm``: FGSM with a
    random start (Wong et al.); ``apgd``: APGD-CE (``steps`` iterations, AutoAttack's step-size
    schedule) returning its **highest-loss** point for every point (AutoAttack's APGD returns the
    clean image for the points it does not misclassify). Other attacks are refused
    (``check_retain_attack``). Each call continues a private random stream seeded with ``seed``.
    """
    if steps < 1:
        raise ConfigError("steps must be at least 1.")
    check_retain_attack(name)
    noise = _Noise(seed)
    if name == "pgd":
        alpha = 2.5 * threat.eps / steps

        def gen(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with eval_mode(model):
                return pgd_perturb(model, x, y, threat, steps=steps, alpha=alpha, noise=noise)

        return gen
    if name == "fgsm":

        def gen(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with eval_mode(model):
                return pgd_perturb(model, x, y, threat, steps=1, alpha=1.25 * threat.eps, noise=noise)

        return gen

    from unlearnbench.robust.aa.apgd import apgd_single_run

    def gen(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.detach()
        start = noise.uniform(x, 0.0, 1.0) if threat.norm == "Linf" else noise.normal(x)
        with eval_mode(model):
            x_best, *_ = apgd_single_run(model, x, y, start, eps=threat.eps, norm=threat.norm, n_iter=steps, loss="ce")
        return x_best.detach()

    return gen
