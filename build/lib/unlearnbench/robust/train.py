"""Adversarial training as hooks for the shared training loop (``core.train.fit``).

A method provides ``loss_fn(model, x, y) -> loss`` (the inner maximisation and the training
loss) and the trainer adds an ``epoch_end`` hook that measures robustness on a held-out batch,
keeps the most robust weights (Rice et al.'s early stopping against robust overfitting) and, for
single-step methods, detects catastrophic overfitting as Wong et al.'s code does (PGD-5 on the
epoch's first training batch, compared with the previous epoch; ``co_check="wong"``) or with the
project's own held-out variant (``co_check="holdout"``). On detection it stops (restoring the most
robust weights) or rolls back and switches to a remedy (N-FGSM or GradAlign).

Protocol, as in the reference code: PGD-AT, fast-AT, N-FGSM and GradAlign generate their examples
in train mode (Madry/Rice/Wong/de Jorge/Andriushchenko: BatchNorm uses batch statistics, and the
attack's forward passes update the running ones), TRADES and MART in eval mode (their code calls
``model.eval()``); ``generate_in_eval`` overrides it. The inner maximisation always runs in fp32,
even when the training step runs under bf16 autocast: a bf16 input gradient is quantised to 8
mantissa bits, which changes the sign pattern FGSM/PGD follow.

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
    # Mode while generating examples: None = the method's reference code (train mode for pgd_at,
    # fast_at, nfgsm, gradalign; eval mode for trades, mart); True/False force eval/train mode.
    generate_in_eval: bool | None = None
    check_steps: int = 10  # PGD steps of the per-epoch robustness check
    check_size: int = 256  # points in the held-out check batch
    keep_most_robust: bool = True  # restore the weights with the best held-out PGD accuracy
    co_detect: bool = True  # catastrophic-overfitting check (single-step methods)
    # "wong": PGD-5 accuracy on the epoch's first training batch drops > co_drop points from the
    # previous epoch (Wong et al.'s code); "holdout": the project's own variant, held-out PGD-
    # check_steps accuracy > co_drop points below its best so far (catches a two-epoch collapse).
    co_check: Literal["wong", "holdout"] = "wong"
    co_drop: float = 20.0  # PGD-accuracy drop (points) that signals CO
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
    """Runs the inner maximisation in the method's mode (train or eval) and in fp32, then
    restores the mode. fp32: under the training step's bf16 autocast the input gradient would be
    rounded to 8 mantissa bits (the reference PGD-AT code trains in fp32)."""

    def __init__(self, cfg: AdvTrainConfig) -> None:
        self.cfg = cfg
        mode = AT_METHODS.info(cfg.method).get("generate_in", "eval")
        self.in_eval = (mode == "eval") if cfg.generate_in_eval is None else cfg.generate_in_eval

    def __call__(self, model: nn.Module, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        dev = next(model.parameters()).device
        with torch.autocast(device_type=dev.type, enabled=False):
            if self.in_eval:
                with eval_mode(model):
                    return fn()
            return fn()


@AT_METHODS.register("pgd_at", summary="Madry PGD-AT: CE on PGD-k examples (eps 8/255, alpha 2/255, 10 steps)",
                     single_step=False, generate_in="train", paper="https://arxiv.org/abs/1706.06083")
def pgd_at(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 2.5 * cfg.eps / cfg.steps

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: pgd_perturb(model, x, y, threat, steps=cfg.steps, alpha=alpha, noise=noise))
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


@AT_METHODS.register("trades", summary="TRADES: CE(x) + beta*KL(f(x')||f(x)), beta 6, KL-PGD inner max",
                     single_step=False, generate_in="eval", paper="https://arxiv.org/abs/1901.08573")
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
                     single_step=False, generate_in="eval", paper="https://openreview.net/forum?id=rklOg6EFwS")
def mart(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 2.5 * cfg.eps / cfg.steps
    beta = 5.0 if cfg.beta is None else cfg.beta

    def inner(model, x, y) -> torch.Tensor:
        # MART's code starts from x + 0.001·N(0, I) (as TRADES), not from a uniform point of the ball.
        x0 = (x + 0.001 * noise.normal(x)).clamp(0, 1)
        return pgd_perturb(model, x, y, threat, steps=cfg.steps, alpha=alpha, noise=None, start=project(x0 - x, x, threat))

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: inner(model, x, y))
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
                     single_step=True, generate_in="train", paper="https://arxiv.org/abs/2001.03994")
def fast_at(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or 1.25 * cfg.eps

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: _fgsm(model, x, y, threat, alpha, noise, 1.0, clip=True))
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


@AT_METHODS.register("nfgsm", summary="N-FGSM: noise in 2*eps, FGSM step eps, no clipping (CO remedy)",
                     single_step=True, generate_in="train", paper="https://arxiv.org/abs/2202.01181")
def nfgsm(cfg: AdvTrainConfig, noise: _Noise) -> LossFn:
    threat, gen = cfg.threat, _Gen(cfg)
    alpha = cfg.alpha or cfg.eps

    def loss_fn(model, x, y):
        x_adv = gen(model, lambda: _fgsm(model, x, y, threat, alpha, noise, 2.0, clip=False))
        return F.cross_entropy(model(x_adv), y)

    return loss_fn


@AT_METHODS.register("gradalign", summary="GradAlign: FGSM + lambda*(1-cos(grad x, grad x+eta)), lambda 0.2 (CO remedy)",
                     single_step=True, generate_in="train", paper="https://arxiv.org/abs/2007.02617")
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
        # As the reference (get_input_grad(..., backprop=False) for the clean point): only the
        # gradient at the noisy point is differentiated through (double backprop once, not twice).
        g1 = input_grad(model, x, y, create_graph=False).detach()
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


def training_batch_pgd_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel,
                                seed: int) -> float:
    """Wong et al.'s catastrophic-overfitting check: PGD-5 (step eps/4, one uniform random start)
    accuracy in percent on a training batch. Run in eval mode (their code leaves the model in train
    mode, so the check itself moves BatchNorm's running statistics; here it does not)."""
    with eval_mode(model):
        x_pgd = pgd_perturb(model, x, y, threat, steps=5, alpha=threat.eps / 4, noise=_Noise(seed))
        with torch.no_grad():
            return 100.0 * float((model(x_pgd).argmax(1) == y).float().mean())


@dataclass
class WongCODetector:
    """Catastrophic overfitting as in Wong et al.'s code: the training-batch PGD accuracy falls by
    more than ``drop`` points from the *previous* epoch's."""

    drop: float = 20.0
    prev: float | None = None

    def update(self, pgd_acc: float) -> bool:
        collapsed = self.prev is not None and pgd_acc - self.prev < -self.drop
        if not collapsed:
            self.prev = pgd_acc
        return collapsed


@dataclass
class CODetector:
    """The project's own catastrophic-overfitting variant (``co_check="holdout"``): held-out PGD
    accuracy falls ``drop`` points below its best so far. Unlike Wong et al.'s previous-epoch rule
    it also catches a collapse spread over two epochs."""

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
    _prev_state: dict | None = None  # Wong's rule rolls back to the previous epoch's weights
    _first_batch: tuple[torch.Tensor, torch.Tensor] | None = None  # this epoch's, for Wong's check
    _loss: LossFn | None = None

    def __post_init__(self) -> None:
        self.method = self.cfg.method
        self.noise = _Noise(self.cfg.seed)
        self._loss = AT_METHODS.get(self.method)(self.cfg, self.noise)
        self.single_step = bool(AT_METHODS.info(self.method).get("single_step"))
        self.detector = self._detector()

    def _detector(self):
        return WongCODetector(self.cfg.co_drop) if self.cfg.co_check == "wong" else CODetector(self.cfg.co_drop)

    def loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self._first_batch is None:
            self._first_batch = (x.detach().clone(), y.detach().clone())
        return self._loss(model, x, y)

    def _switch(self, method: str) -> None:
        self.method = method
        self._loss = AT_METHODS.get(method)(dataclasses.replace(self.cfg, method=method, alpha=None), self.noise)
        self.detector = self._detector()

    def _co_check(self, model: nn.Module, record: dict) -> float | None:
        """This epoch's value for the CO rule (None when there is nothing to check)."""
        if not (self.cfg.co_detect and self.single_step):
            return None
        if self.cfg.co_check == "wong":
            batch, self._first_batch = self._first_batch, None
            if batch is None:
                return None
            acc = training_batch_pgd_accuracy(model, batch[0], batch[1], self.cfg.threat, self.cfg.seed)
            record["co_check_pgd_acc"] = acc
            return acc
        return record.get("holdout_pgd_acc")

    def epoch_end(self, epoch: int, record: dict, model: nn.Module) -> bool:
        """Record held-out FGSM/PGD accuracy; keep the most robust weights; handle CO. True = stop."""
        record["at_method"] = self.method
        fgsm = pgd = float("nan")
        if self.holdout is not None:
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
        value = self._co_check(model, record)
        collapsed = value is not None and self.detector.update(value)
        record["co_detected"] = float(collapsed)
        last = self.epochs is not None and epoch >= self.epochs
        if collapsed:
            event = {"epoch": epoch, "check": self.cfg.co_check, "check_pgd_acc": value, "holdout_pgd_acc": pgd,
                     "fgsm_acc": fgsm, "best_pgd_acc": self.best_pgd_acc, "method": self.method,
                     "remedy": self.cfg.co_remedy}
            self.events.append(event)
            log.warning("catastrophic overfitting at epoch %d (%s check): PGD accuracy %.1f%% (held-out best %.1f%%, "
                        "FGSM %.1f%%); remedy: %s", epoch, self.cfg.co_check, value, self.best_pgd_acc, fgsm,
                        self.cfg.co_remedy)
            remedy = self.cfg.co_remedy
            if remedy == "stop":
                self._roll_back(model)
                return True
            if remedy in ("nfgsm", "gradalign") and self.method != remedy:
                self._roll_back(model)  # back to the last robust weights, continue with the remedy
                self._switch(remedy)
        elif value is not None and self.cfg.co_check == "wong":
            self._prev_state = copy.deepcopy(model.state_dict())
        if last:
            self.restore(model)
        return False

    def _roll_back(self, model: nn.Module) -> None:
        """Wong's rule: the previous epoch's weights; the held-out variant: the most robust ones."""
        if self.cfg.co_check == "wong" and self._prev_state is not None:
            model.load_state_dict(self._prev_state)
        else:
            self.restore(model)

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
            "co_check": self.cfg.co_check if self.single_step and self.cfg.co_detect else "none",
            "generated_in": "eval" if _Gen(self.cfg).in_eval else "train",
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
