"""One forward pass per (model, split): logits, labels and the signals every metric reads."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

from unlearnbench.core.data import TensorSet
from unlearnbench.core.errors import UserError
from unlearnbench.core.train import predict
from unlearnbench.eval import signals


class NonFiniteOutputs(UserError):
    """The model's logits contain NaN or inf: it has diverged, and no metric of it means anything."""


@dataclass(frozen=True)
class Predictions:
    """Float32 logits (CPU), labels and source indices of one split; signals are cached."""

    logits: torch.Tensor
    labels: torch.Tensor
    idx: torch.Tensor
    name: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def of(cls, model: nn.Module, data: TensorSet, batch_size: int = 1024, amp: bool = False) -> Predictions:
        logits = predict(model, data, batch_size=batch_size, amp=amp).float().cpu()
        # NaN logits argmax to class 0, so a diverged model would otherwise score near-zero forget
        # accuracy, i.e. "perfect" unlearning, before the MIA fits fail on the NaNs.
        bad = int((~torch.isfinite(logits)).any(1).sum())
        if bad:
            raise NonFiniteOutputs(
                f"The model's outputs are NaN or infinite on {bad} of {len(logits)} {data.name or 'evaluation'} "
                "samples: it has diverged (e.g. an unlearning learning rate too high) and cannot be evaluated."
            )
        return cls(logits, data.y.cpu(), data.idx.cpu(), data.name)

    def select(self, keep: torch.Tensor, name: str | None = None) -> Predictions:
        keep = keep.cpu()
        return Predictions(self.logits[keep], self.labels[keep], self.idx[keep], self.name if name is None else name)

    # functools.cached_property writes to the instance __dict__, which a frozen dataclass allows.
    @functools.cached_property
    def correct(self) -> torch.Tensor:
        return self.logits.argmax(1) == self.labels

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy in percent (NaN for an empty split)."""
        return 100.0 * self.correct.double().mean().item() if len(self) else float("nan")

    @functools.cached_property
    def probs(self) -> torch.Tensor:
        return signals.probabilities(self.logits)

    @functools.cached_property
    def confidence(self) -> torch.Tensor:
        return signals.confidence(self.logits, self.labels)

    @functools.cached_property
    def loss(self) -> torch.Tensor:
        return signals.loss(self.logits, self.labels)

    @functools.cached_property
    def entropy(self) -> torch.Tensor:
        return signals.entropy(self.logits)

    @functools.cached_property
    def m_entropy(self) -> torch.Tensor:
        return signals.modified_entropy(self.logits, self.labels)

    @functools.cached_property
    def phi(self) -> torch.Tensor:
        return signals.scaled_logit(self.logits, self.labels)
