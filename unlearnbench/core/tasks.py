"""Tasks a model, method or metric serves (``classification``, ``generation``), as a registry.

Each task says how to check that a user's model fits the data before any work starts, so
``unlearn.run`` and the evaluators look the check up by the method's declared task instead of
branching on task names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from unlearnbench.core.errors import ModelError
from unlearnbench.core.registry import Registry

# check(model, channels, height, width, num_classes, what) -> None, or one sentence (ModelError)
ModelCheck = Callable[[nn.Module, int, int, int, int, str], None]


@dataclass(frozen=True)
class Task:
    """``classifier``: its models return logits, so accuracy-based steps apply (input normalisation
    from the data, per-regime method recipes, the utility check after unlearning)."""

    name: str
    check_model: ModelCheck
    summary: str = ""
    classifier: bool = True


TASKS: Registry[Task] = Registry("tasks")


def _check_classifier(model: nn.Module, c: int, h: int, w: int, k: int, what: str) -> None:
    from unlearnbench.core.diffusion import is_generator
    from unlearnbench.core.foreign import check_model_fits

    if is_generator(model):
        raise ModelError(f"{what} is a generation model (a conditional DDPM); this method unlearns classifiers "
                         "(see `unlearnbench ls methods` for the generation methods).")
    check_model_fits(model, c, h, w, k, what)


def _check_generator(model: nn.Module, c: int, h: int, w: int, k: int, what: str) -> None:
    from unlearnbench.core.diffusion import is_generator

    if not is_generator(model):
        raise ModelError(f"{what} is not a generation model; this method unlearns conditional DDPMs "
                         "(train one with `unlearnbench train --model ddpm_tiny`).")
    if (model.in_channels, model.image_size, model.image_size, model.num_classes) != (c, h, w, k):
        raise ModelError(
            f"{what} generates {model.num_classes} classes of {model.in_channels}x{model.image_size}x{model.image_size} "
            f"images, but the data has {k} classes of {c}x{h}x{w}; use a model trained on this dataset."
        )


TASKS.add("classification", Task("classification", _check_classifier, "image classifiers (logits out)"))
TASKS.add("generation", Task("generation", _check_generator, "class-conditional image generators (DDPMs)",
                             classifier=False))
