"""Is a model near chance because its inputs are normalised differently from its training?

The commonest first-contact failure (issue 21): a model trained on normalised images evaluated
on [0, 1] images (37 % instead of 91 %), or given mean/std in 0-255 units (10 %). Nothing fails;
the numbers are just wrong. When a model is near chance, :func:`mismatch_hint` tries the usual
normalisations on a seeded sample and, if one of them brings the accuracy well above chance,
names it — evidence from the model itself rather than a guess from pixel statistics.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unlearnbench.core.data import TensorSet
from unlearnbench.core.foreign import Normalized, with_normalization
from unlearnbench.core.train import accuracy

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def near_chance(acc: float, num_classes: int) -> bool:
    chance = 100.0 / num_classes
    return acc <= max(1.5 * chance, chance + 5.0)


def _sample(tset: TensorSet, n: int, seed: int = 0) -> TensorSet:
    if len(tset) <= n:
        return tset
    pick = torch.randperm(len(tset), generator=torch.Generator().manual_seed(seed))[:n].to(tset.x.device)
    return TensorSet(tset.x[pick], tset.y[pick], tset.idx[pick], name=tset.name)


def _per_channel(values: tuple[float, ...], c: int) -> tuple[float, ...]:
    return values * c if len(values) == 1 else values


def candidates(model: nn.Module, info: object) -> list[tuple[str, nn.Module]]:
    """The usual normalisations of ``model``'s input, each as a wrapped model, with how to ask for it."""
    c = int(getattr(info, "in_channels", 3))
    out: list[tuple[str, nn.Module]] = []
    inner = model.model if isinstance(model, Normalized) else model
    if isinstance(model, Normalized):
        mean = tuple(model.normalize.mean.flatten().tolist())
        std = tuple(model.normalize.std.flatten().tolist())
        if any(abs(v) > 1.5 for v in mean) or any(v > 1.5 for v in std):
            scaled = (tuple(round(v / 255, 4) for v in mean), tuple(round(v / 255, 4) for v in std))
            out.append((f"its mean/std divided by 255 (mean {scaled[0]}, std {scaled[1]}): they are in 0-255 "
                        "units, the images in [0, 1]", with_normalization(inner, *scaled)))
    data_stats = (tuple(getattr(info, "mean", ())), tuple(getattr(info, "std", ())))
    if len(data_stats[0]) == c:
        rounded = tuple(tuple(round(v, 4) for v in s) for s in data_stats)
        out.append((f"the data's own statistics (mean {rounded[0]}, std {rounded[1]}; --normalize dataset)",
                    with_normalization(inner, *data_stats)))
    if c == 3:
        out.append(("ImageNet's statistics (--normalize imagenet)", with_normalization(inner, *IMAGENET)))
    out.append(("mean 0.5, std 0.5 per channel (--normalize 0.5,0.5)",
                with_normalization(inner, _per_channel((0.5,), c), _per_channel((0.5,), c))))
    return out


@torch.no_grad()
def mismatch_hint(model: nn.Module, tset: TensorSet, info: object, num_classes: int, n: int = 512,
                  acc: float | None = None) -> str | None:
    """One sentence when ``model`` is near chance on ``tset`` but a usual normalisation lifts it
    at least 20 points above chance on a seeded sample of ``n`` points; None otherwise."""
    sample = _sample(tset, n)
    base = accuracy(model, sample) if acc is None else acc
    if not near_chance(base, num_classes):
        return None
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    best: tuple[float, str] | None = None
    for label, wrapped in candidates(model, info):
        got = accuracy(wrapped.to(device), sample)
        if best is None or got > best[0]:
            best = (got, label)
    if best is None or best[0] < 100.0 / num_classes + 20.0:
        return None
    return (f"The model is near chance ({base:.1f}%) on these [0, 1] images but reaches {best[0]:.1f}% "
            f"(n={len(sample)}) with {best[1]}: it was trained on normalised inputs; give that mean/std with "
            "the data (UnlearnData.from_tensors(..., mean=..., std=...)) or to unlearnbench import --normalize.")
