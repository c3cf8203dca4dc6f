"""Evaluation of a generation model (a conditional DDPM) after class-wise unlearning: sample it
once, score the samples with every generation metric (``eval.metrics.generation``: UA, FID,
precision / recall, class accuracy, each with n and a 95 % interval), keep sample grids."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.data import UnlearnData
from unlearnbench.core.errors import ConfigError, ModelError
from unlearnbench.eval.metrics.base import METRICS
from unlearnbench.eval.metrics.generation import (  # noqa: F401  (re-exported: the generation metrics' API)
    FidBootstrap,
    GenEvalConfig,
    GenEvalContext,
    batched_fid,
    bootstrap_fid,
    fid_from_features,
    frechet_distance,
    gen_acc_retained,
    gen_fid,
    gen_precision_recall,
    gen_ua,
    generation_metrics,
    precision_recall,
)

# ----------------------------------------------------------------------------- the evaluation


@dataclass
class GenReport:
    """A generation model's evaluation: values (+ ``_lo``/``_hi`` 95 % bounds), counts, sample grids."""

    values: dict[str, float]
    counts: dict[str, int]
    meta: dict[str, Any]
    grids: dict[str, torch.Tensor]  # name -> (C, H, W) image in [0, 1]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "counts": self.counts, "meta": self.meta, "seconds": self.seconds}


def evaluate_generation(model: nn.Module, data: UnlearnData, classifier: nn.Module, config: GenEvalConfig | None = None,
                        *, classifier_name: str = "classifier", device: torch.device | str | None = None) -> GenReport:
    """Sample the generator once and compute every requested generation metric on the samples."""
    from unlearnbench.core.diffusion import SampleConfig, grid, is_generator, sample
    from unlearnbench.core.tasks import TASKS

    config = config or GenEvalConfig()
    if not is_generator(model):
        raise ModelError(f"Generation metrics need a conditional DDPM, not {type(model).__name__}.")
    c, h, w = (int(d) for d in data.test.x.shape[1:])
    TASKS.get("generation").check_model(model, c, h, w, data.num_classes, "The generator")
    TASKS.get("classification").check_model(classifier, c, h, w, data.num_classes, f"The classifier {classifier_name}")
    forgotten = tuple(data.forget_classes)
    if not forgotten:
        raise ConfigError("Generation unlearning is class-wise: give a forget spec class:C.")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    kept = [k for k in range(data.num_classes) if k not in forgotten]
    t0 = time.perf_counter()
    sc = SampleConfig(guidance=config.guidance, steps=config.steps, eta=config.eta, batch_size=config.batch_size,
                      seed=config.seed)
    f_labels = torch.tensor(forgotten).repeat_interleave(config.n_forget)
    k_labels = torch.tensor(kept).repeat_interleave(config.n_per_class)
    samples = sample(model.to(dev), torch.cat([f_labels, k_labels]), sc)
    sample_seconds = time.perf_counter() - t0
    test = data.test_retained if data.test_retained is not None else data.test
    real = test.x.float().cpu() / 255
    if config.n_real is not None and config.n_real < len(real):
        g = torch.Generator().manual_seed(config.seed)
        real = real[torch.randperm(len(real), generator=g)[:config.n_real]]
    was = classifier.training
    classifier.eval().to(dev)
    ctx = GenEvalContext(model, data, classifier, classifier_name, config, forgotten, samples[:len(f_labels)], f_labels,
                         samples[len(f_labels):], k_labels, real, dev,
                         extractor_name=_extractor_name(config, classifier_name))
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        for name in config.metrics or generation_metrics():
            out = METRICS.get(name)(ctx)
            values.update(out.values)
            counts.update(out.counts)
    finally:
        classifier.train(was)
    per = config.grid_per_class
    grids = {"forgotten": grid(ctx.forget_samples[:per * len(forgotten)], per)}
    firsts = torch.cat([ctx.kept_samples[i * config.n_per_class: i * config.n_per_class + per] for i in range(len(kept))])
    grids["remembered"] = grid(firsts, per)
    seconds = time.perf_counter() - t0
    meta = {"classifier": classifier_name, "extractor": ctx.extractor_name, "forget_classes": list(forgotten),
            "kept_classes": kept, "guidance": config.guidance, "steps": config.steps, "eta": config.eta,
            "sample_seconds": sample_seconds}
    return GenReport(values, counts, meta, grids, seconds)


def _extractor_name(config: GenEvalConfig, classifier_name: str) -> str:
    if config.extractor == "classifier":
        return f"penultimate features of {classifier_name}"
    return f"Inception-v3 pool3 ({config.extractor.partition(':')[2]})"
