"""Adversarial training as hooks for the shared training loop (``core.train.fit``).

A method provides ``loss_fn(model, x, y) -> loss`` (the inner maximisation and the training
loss) and the trainer adds an ``epoch_end`` hook that measures robustness on a held-out batch,
keeps the most robust weights (Rice et al.'s early stopping against robust overfitting) and, for
single-step methods, detects catastrophic overfitting (Wong et al.): PGD accuracy collapsing while
FGSM accuracy holds. On detection it stops (restoring the most robust weights) or rolls back and
switches to a remedy (N-FGSM or GradAlign).

Methods (registry ``AT_METHODS``): ``pgd_at`` (Madry), ``trades`` (β = 6), ``mart`` (β = 5, the
ResNet setting), ``fast_at`` (FGSM with random start, α = 1.25 ε), ``nfgsm`` (noise 2ε, α = ε, no
clipping), ``gradalign`` (FGSM + λ·(1 − cos) gradient alignment).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from unlearnbench.core.config import configclass, from_dict
from unlearnbench.core.data import DatasetInfo, TensorSet
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.registry import Registry
from unlearnbench.core.train import TrainConfig, TrainResult, fit
from unlearnbench.robust.adversarial import _Noise, ascent_step, pgd_perturb, project, random_start
from unlearnbench.robust.attacks import eval_mode
from unlearnbench.robust.threat import ThreatModel

log = logging.getLogger(__name__)


@configclass
class AdvTrainConfig:
    """Adversarial-training hyperparameters (the optimiser and schedule stay in ``TrainConfig``)."""

    method: str = "pgd_at"
    norm: Literal["Linf", "L2"] = "Linf"
    eps: float = 8 / 255
    steps: int = 10  # inner PGD steps (pgd_at, trades, mart)
    alpha: float | None = None  # inner step size; None = the method's default
    beta: float | None = None  # trades (6.0) / mart (5.0) regulariser weight
    gradalign_lambda: float = 0.2
    generate_in_eval: bool = True  # BN in eval mode while generating (TRADES/MART practice)
    check_steps: int = 10  # PGD steps of the per-epoch robustness check
    check_size: int = 256  # points in the held-out check batch
    keep_most_robust: bool = True  # restore the weights with the best held-out PGD accuracy
    co_detect: bool = True  # catastrophic-overfitting check (single-step methods)
    co_drop: float = 20.0  # PGD-accuracy drop (points) from the best epoch that signals CO
    co_remedy: Literal["stop", "nfgsm", "gradalign", "none"] = "stop"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in AT_METHODS:
            AT_METHODS.entry(self.method)  # raises with "did you mean" and the valid names
        if self.eps <= 0:
            raise ConfigError("eps must be positive.")
        if self.steps < 1 or self.check_steps < 1 or self.check_size < 1:
            raise ConfigError("steps, check_steps and check_size must be at least 1.")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError("alpha must be positive.")
        if self.co_drop <= 0:
            raise ConfigError("co_drop is a positive accuracy drop in points, e.g. 20.")

    @property
    def threat(self) -> ThreatModel:
        return ThreatModel(self.norm, self.eps)


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
MethodFactory = Callable[[AdvTrainConfig, _Noise], LossFn]
AT_METHODS: Registry[MethodFactory] = Registry("adversarial_training")


class _Gen:
    """Runs the inner maximisation in eval mode when configured, then restores the mode."""

    def __init__(self, cfg: AdvTrainConfig) -> None:
        self.cfg = cfg

    def __call__(self, model: nn.Module, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.cfg.generate_in_eval:
            with eval_mode(model):
                return fn()
        return fn()


@AT_METHODS.register("pgd_at", summary="Madry PGD-AT: CE on PGD-k examples (eps 8/255, alpha 2/255, 10 steps)",
                     single_step=False, paper="https://arxiv.org/abs/1706.06083")
def pgd_at(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 2.5 * cfg.eps / cfg.steps

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: pgd_perturb(model, x, y, threat, steps=cfg.steps, alpha=alpha, noise=noise))
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


@AT_METHODS.register("trades", summary="TRADES: CE(x) + beta*KL(f(x')||f(x)), beta 6, KL-PGD inner max",
                     single_step=False, paper="https://arxiv.org/abs/1901.08573")
def trades(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 2.5 * cfg.eps / cfg.steps
    beta = 6.0 if cfg.beta is None else cfg.beta

    def loss_fn(model, x, y):
        def inner() -> torch.Tensor:
            with torch.no_grad():
                p_nat = F.softmax(model(x), dim=1)
            kl = lambda logits, _y: F.kl_div(F.log_softmax(logits, dim=1), p_nat, reduction="sum")  # noqa: E731
            # TRADES starts from x + 0.001·N(0, I), not from a uniform point of the ball.
            x0 = (x + 0.001 * noise.normal(x)).clamp(0, 1)
            return pgd_perturb(model, x, y, threat, steps=cfg.steps, alpha=alpha, noise=None, loss_fn=kl,
                               start=project(x0 - x, x, threat))

        x_adv = gen(model, inner)
        logits = model(x)
        logits_adv = model(x_adv)
        robust = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, y) + beta * robust

    return loss_fn


@AT_METHODS.register("mart", summary="MART: boosted CE on PGD examples + beta*KL weighted by (1-p_y), beta 5",
                     single_step=False, paper="https://openreview.net/forum?id=rklOg6EFwS")
def mart(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 2.5 * cfg.eps / cfg.steps
    beta = 5.0 if cfg.beta is None else cfg.beta

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: pgd_perturb(model, x, y, threat, steps=cfg.steps, alpha=alpha, noise=noise))
        logits = model(x)
        logits_adv = model(x_adv)
        adv_probs = F.softmax(logits_adv, dim=1)
        top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
        new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
        loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
        nat_probs = F.softmax(logits, dim=1)
        true_probs = torch.gather(nat_probs, 1, y.unsqueeze(1)).squeeze(1)
        kl = F.kl_div(torch.log(adv_probs + 1e-12), nat_probs, reduction="none").sum(dim=1)
        return loss_adv + beta * (kl * (1.0000001 - true_probs)).mean()

    return loss_fn


def _fgsm(model, x, y, threat: ThreatModel, alpha: float, noise: _Noise, init_scale: float, clip: bool) -> torch.Tensor:
    delta = random_start(noise, x, threat, scale=init_scale)
    delta = (x + delta).clamp(0, 1) - x
    delta.requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), [delta])
    delta = delta.detach() + ascent_step(g, alpha, threat.norm)
    if clip:
        return (x + project(delta, x, threat)).detach()
    return (x + delta).clamp(0, 1).detach()  # N-FGSM: no projection back to the eps-ball


@AT_METHODS.register("fast_at", summary="Fast-AT (Wong): FGSM from a random start, alpha 1.25*eps; CO check",
                     single_step=True, paper="https://arxiv.org/abs/2001.03994")
def fast_at(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 1.25 * cfg.eps

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: _fgsm(model, x, y, threat, alpha, noise, 1.0, clip=True))
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


@AT_METHODS.register("nfgsm", summary="N-FGSM: noise in 2*eps, FGSM step eps, no clipping (CO remedy)",
                     single_step=True, paper="https://arxiv.org/abs/2202.01181")
def nfgsm(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or cfg.eps

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: _fgsm(model, x, y, threat, alpha, noise, 2.0, clip=False))
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


@AT_METHODS.register("gradalign", summary="GradAlign: FGSM + lambda*(1-cos(grad x, grad x+eta)), lambda 0.2 (CO remedy)",
                     single_step=True, paper="https://arxiv.org/abs/2007.02617")
def gradalign(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 1.25 * cfg.eps

    def input_grad(model, x, y, create_graph: bool) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), [x], create_graph=create_graph)
        return g.flatten(1)

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: _fgsm(model, x, y, threat, alpha, noise, 0.0, clip=True))
        loss = F.cross_entropy(model(x_adv), y)
        g1 = input_grad(model, x, y, create_graph=True)
        g2 = input_grad(model, (x + random_start(noise, x, threat)).clamp(0, 1), y, create_graph=True)
        cos = F.cosine_similarity(g1, g2, dim=1, eps=1e-12)
        return loss + cfg.gradalign_lambda * (1.0 - cos).mean()

    return loss_fn


# ----------------------------------------------------------------------------- robustness checks


def holdout_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, steps: int,
                     seed: int) -> tuple[float, float]:
    """(FGSM, PGD-``steps``) accuracy in percent on a fixed batch, in eval mode."""
    noise = _Noise(seed)
    with eval_mode(model):
        x_fgsm = pgd_perturb(model, x, y, threat, steps=1, alpha=threat.eps, noise=None)
        x_pgd = pgd_perturb(model, x, y, threat, steps=steps, alpha=2.5 * threat.eps / steps, noise=noise)
        with torch.no_grad():
            fgsm = 100.0 * float((model(x_fgsm).argmax(1) == y).float().mean())
            pgd = 100.0 * float((model(x_pgd).argmax(1) == y).float().mean())
    return fgsm, pgd


@dataclass
class CODetector:
    """Catastrophic overfitting: held-out PGD accuracy falls ``drop`` points below its best so far.

    Wong et al. stop when PGD accuracy drops by 20 points between checks; comparing with the best
    so far also catches a collapse spread over two epochs.
    """

    drop: float = 20.0
    best: float = float("-inf")

    def update(self, pgd_acc: float) -> bool:
        collapsed = self.best > float("-inf") and pgd_acc < self.best - self.drop
        self.best = max(self.best, pgd_acc)
        return collapsed


@dataclass
class AdversarialTraining:
    """``loss_fn`` and ``epoch_end`` for ``core.train.fit``, plus what happened (for the checkpoint)."""

    cfg: AdvTrainConfig
    holdout: tuple[torch.Tensor, torch.Tensor] | None = None
    epochs: int | None = None
    method: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_pgd_acc: float = float("nan")
    _best_state: dict | None = None
    _loss: LossFn | None = None

    def __post_init__(self) -> None:
        self.method = self.cfg.method
        self.noise = _Noise(self.cfg.seed)
        self._loss = AT_METHODS.get(self.method)(self.cfg, self.noise)
        self.single_step = bool(AT_METHODS.info(self.method).get("single_step"))
        self.detector = CODetector(self.cfg.co_drop)

    def loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._loss(model, x, y)

    def _switch(self, method: str) -> None:
        self.method = method
        self._loss = AT_METHODS.get(method)(dataclasses.replace(self.cfg, method=method, alpha=None), self.noise)
        self.detector = CODetector(self.cfg.co_drop)

    def epoch_end(self, epoch: int, record: dict, model: nn.Module) -> bool:
        """Record held-out FGSM/PGD accuracy; keep the most robust weights; handle CO. True = stop."""
        record["at_method"] = self.method
        if self.holdout is None:
            return False
        x, y = self.holdout
        dev = next(model.parameters()).device
        x, y = x.to(dev), y.to(dev)
        fgsm, pgd = holdout_accuracy(model, x, y, self.cfg.threat, self.cfg.check_steps, self.cfg.seed)
        record["holdout_fgsm_acc"] = fgsm
        record["holdout_pgd_acc"] = pgd
        if not pgd <= self.best_pgd_acc:  # also true for the first epoch (nan)
            self.best_pgd_acc, self.best_epoch = pgd, epoch
            if self.cfg.keep_most_robust:
                self._best_state = copy.deepcopy(model.state_dict())
        collapsed = self.cfg.co_detect and self.single_step and self.detector.update(pgd)
        record["co_detected"] = float(collapsed)
        last = self.epochs is not None and epoch >= self.epochs
        if collapsed:
            event = {"epoch": epoch, "pgd_acc": pgd, "fgsm_acc": fgsm, "best_pgd_acc": self.best_pgd_acc,
                     "method": self.method, "remedy": self.cfg.co_remedy}
            self.events.append(event)
            log.warning("catastrophic overfitting at epoch %d: held-out PGD accuracy %.1f%% (best %.1f%%, FGSM %.1f%%); "
                        "remedy: %s", epoch, pgd, self.best_pgd_acc, fgsm, self.cfg.co_remedy)
            remedy = self.cfg.co_remedy
            if remedy == "stop":
                self.restore(model)
                return True
            if remedy in ("nfgsm", "gradalign") and self.method != remedy:
                self.restore(model)  # roll back to the last robust weights, continue with the remedy
                self._switch(remedy)
        if last:
            self.restore(model)
        return False

    def restore(self, model: nn.Module) -> None:
        if self.cfg.keep_most_robust and self._best_state is not None:
            model.load_state_dict(self._best_state)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.cfg.method,
            "final_method": self.method,
            "norm": self.cfg.norm,
            "eps": self.cfg.eps,
            "steps": self.cfg.steps,
            "selection": "best held-out PGD accuracy" if self.cfg.keep_most_robust and self.holdout is not None else "last epoch",
            "best_epoch": self.best_epoch,
            "best_holdout_pgd_acc": self.best_pgd_acc,
            "co_events": self.events,
        }


def make_adversarial_training(config: AdvTrainConfig | dict, holdout: TensorSet | None = None, *,
                              epochs: int | None = None) -> AdversarialTraining:
    """Hooks for ``fit`` / ``core.jobs.train_model``; ``holdout`` = the sets whose first
    ``check_size`` points are attacked each epoch (use the validation split)."""
    cfg = config if isinstance(config, AdvTrainConfig) else from_dict(AdvTrainConfig, config)
    batch = None
    if holdout is not None and len(holdout):
        sub = holdout.select(torch.arange(min(cfg.check_size, len(holdout))).to(holdout.y.device))
        batch = (sub.x.float().div(255), sub.y)
    return AdversarialTraining(cfg, batch, epochs)


def adversarial_fit(model: nn.Module, train: TensorSet, val: TensorSet | None, info: DatasetInfo,
                    train_config: TrainConfig, at_config: AdvTrainConfig | dict) -> tuple[TrainResult, AdversarialTraining]:
    """Adversarially train ``model`` in place with ``fit``.

    ``fit``'s best-clean-validation selection is switched off: after catastrophic overfitting the
    clean accuracy *rises*, so the trainer selects by held-out PGD accuracy instead.
    """
    at = make_adversarial_training(at_config, val, epochs=train_config.epochs)
    cfg = dataclasses.replace(train_config, keep_best=False)
    result = fit(model, train, val, info, cfg, loss_fn=at.loss_fn, epoch_end=at.epoch_end,
                 description=f"{at.cfg.method} adversarial training")
    result.best_epoch = at.best_epoch or result.best_epoch
    return result, at


def adversarial_hooks(method: str, norm: str, eps: str | float | None, steps: int, train_config: TrainConfig,
                      dataset: str, split_seed: int, val_fraction: float, source=None,
                      ) -> tuple[AdversarialTraining, TrainConfig]:
    """What ``unlearnbench train --adversarial`` needs: the hooks (checked on the validation split
    of the same ``split_seed``) and the training config with fit's clean-accuracy selection off."""
    from unlearnbench.core.data import prepare
    from unlearnbench.core.runtime import resolve_device

    threat = ThreatModel.parse(norm, eps)
    at_cfg = from_dict(AdvTrainConfig, {"method": method, "norm": threat.norm, "eps": threat.eps, "steps": steps,
                                        "seed": train_config.seed})
    splits, _ = prepare(dataset, None, split_seed=split_seed, val_fraction=val_fraction, source=source,
                        device=resolve_device(train_config.device))
    at = make_adversarial_training(at_cfg, splits.val if len(splits.val) else None, epochs=train_config.epochs)
    return at, dataclasses.replace(train_config, keep_best=False)
