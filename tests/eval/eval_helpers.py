"""Helpers of the evaluation tests: a model with pre-set logits and constructed data."""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.core.data import DatasetInfo, TensorSet, UnlearnData, parse_forget_spec

# LiRA pools in the tests: MLP shadows trained long without weight decay, so membership leaks
# measurably on digits.
SHADOW_CFG = dict(epochs=40, batch_size=64, lr=0.05, weight_decay=0.0, keep_best=False, device="cpu")


class LookupModel(nn.Module):
    """Returns pre-set logits for each image: the image's first two pixels encode its row."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", logits.float())
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device and a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = (x[:, 0, 0, 0] * 255).round().long() * 256 + (x[:, 0, 0, 1] * 255).round().long()
        return self.table[code] + 0 * self.anchor


def _images(rows: range) -> torch.Tensor:
    x = torch.zeros(len(rows), 1, 8, 8, dtype=torch.uint8)
    for i, r in enumerate(rows):
        x[i, 0, 0, 0] = r // 256
        x[i, 0, 0, 1] = r % 256
    return x


def make_constructed(forget, retain, test, val=None, num_classes=None):
    """Each split a (logits, labels) pair; returns (model, data) whose predictions are exactly
    those logits (random-forgetting spec)."""
    parts = {"forget": forget, "retain": retain, "test": test, "val": val or test}
    logits, sets, start = [], {}, 0
    for name, (lg, y) in parts.items():
        lg = torch.as_tensor(lg, dtype=torch.float32)
        y = torch.as_tensor(y, dtype=torch.int64)
        rows = range(start, start + len(y))
        sets[name] = TensorSet(_images(rows), y, torch.arange(len(y)) + (start if name in ("forget", "retain") else 0), name=name)
        logits.append(lg)
        start += len(y)
    table = torch.cat(logits)
    c = num_classes or table.shape[1]
    info = DatasetInfo("toy", c, 1, 8, (0.5,), (0.5,), class_names=tuple(str(i) for i in range(c)))
    data = UnlearnData(
        forget=sets["forget"], retain=sets["retain"], val=sets["val"], test=sets["test"], num_classes=c,
        info=info, spec=parse_forget_spec("random:0.1"), split_seed=0,
    )
    return LookupModel(table).eval(), data


def binary_logits(confidences, label=0):
    """Two-class logits whose true-class (``label``) softmax probability is ``confidences``."""
    p = torch.as_tensor(confidences, dtype=torch.float64)
    z = torch.log(p / (1 - p))
    logits = torch.zeros(len(p), 2, dtype=torch.float64)
    logits[:, label] = z
    return logits.float(), torch.full((len(p),), label)
