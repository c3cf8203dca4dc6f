"""A generation study's job plan and its two job functions, run in-process or on a Ray worker
(same functions, ``core.executor``): ``gen_train_job`` trains (or reuses the cached checkpoint of)
the scoring classifier, an original DDPM or a Retrain; ``gen_eval_job`` unlearns (method rows) and
evaluates one model, returning its ``GenReport`` as JSON-ready values with the sample grids as PNG.
Workers never write to MLflow: the driver (``study.generation``) records what they return.

An evaluation job's ``key`` hashes everything its result depends on (the models' training
configs and data, the method's full config, the evaluation config, the seed), so a resumed study
re-runs exactly the jobs whose content changed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearnbench.core.config import flatten, from_dict, to_dict
from unlearnbench.core.data import DataSource
from unlearnbench.study.jobs import timed_result


def content_key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def png_base64(image: torch.Tensor, scale: int = 4) -> str:
    """A (C, H, W) [0, 1] image as base64 PNG (nearest-neighbour upscaled ``scale`` times)."""
    from PIL import Image

    img = image.repeat_interleave(scale, -1).repeat_interleave(scale, -2) if scale > 1 else image
    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def png_tensor(text: str) -> torch.Tensor:
    """The inverse of ``png_base64(image, scale=1)`` for 8-bit images (exact: PNG is lossless)."""
    import numpy as np
    from PIL import Image

    arr = np.array(Image.open(io.BytesIO(base64.b64decode(text))))
    t = torch.from_numpy(arr).float() / 255
    return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)


@dataclass(frozen=True)
class GenTrainJob:
    kind: str  # classifier | original | retrain
    dataset: str
    model: str
    train: dict[str, Any]  # TrainConfig (classifier) or DiffusionTrainConfig keys
    exclude: str | None
    split_seed: int
    val_fraction: float
    source: DataSource | None
    path: str


def gen_train_job(job: GenTrainJob) -> dict[str, Any]:
    """Train (or reuse the cached checkpoint of) one model; returns its metadata."""
    from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
    from unlearnbench.core.jobs import train_generator, train_model

    path = Path(job.path)
    if path.is_file():
        return {"meta": load_checkpoint(path).meta, "cached": True}
    common = dict(exclude=job.exclude, split_seed=job.split_seed, val_fraction=job.val_fraction, source=job.source)
    if job.kind == "classifier":
        from unlearnbench.core.train import TrainConfig

        outcome = train_model(job.dataset, job.model, from_dict(TrainConfig, job.train), **common)
    else:
        from unlearnbench.core.diffusion import DiffusionTrainConfig

        outcome = train_generator(job.dataset, job.model, from_dict(DiffusionTrainConfig, job.train), **common)
    save_checkpoint(path, outcome.model, outcome.meta)
    return {"meta": outcome.meta, "cached": False}


@dataclass(frozen=True)
class GenEvalJob:
    kind: str  # retrain | original | unlearn
    label: str
    method: str
    method_config: dict[str, Any]  # the study's keys for the method
    spec: str
    seed: int
    dataset: str
    model: str
    split_seed: int
    val_fraction: float
    source: DataSource | None
    device: str
    original_path: str
    retrain_path: str
    classifier_path: str
    evaluation: dict[str, Any]  # GenEvalConfig keys, seed included
    models_key: str  # the content key of the original / Retrain / classifier this job reads
    full_config: dict[str, Any] | None = None  # the method's full config (defaults filled in): keyed
    classifier_name: str = ""  # filled in by the driver once the classifier exists (not part of the key)

    @property
    def slot(self) -> str:
        """The row this job fills (one per study layout); a changed config gives a new ``key``, same slot."""
        return f"{self.kind}|{self.label}|{self.spec}|{self.seed}"

    @property
    def key(self) -> str:
        return content_key({"slot": self.slot, "method": self.method, "config": self.full_config,
                            "evaluation": self.evaluation, "models": self.models_key})


def gen_eval_job(job: GenEvalJob) -> dict[str, Any]:
    """Unlearn (``unlearn`` rows) and evaluate one model; returns the report, or the error (the
    traceback kept for the FAILED run)."""
    return timed_result(_gen_eval_job, job)


def _gen_eval_job(job: GenEvalJob) -> dict[str, Any]:
    from unlearnbench import unlearn
    from unlearnbench.core.checkpoint import load_checkpoint
    from unlearnbench.core.data import prepare
    from unlearnbench.core.runtime import resolve_device
    from unlearnbench.eval.generation import GenEvalConfig, evaluate_generation

    device = resolve_device(job.device)
    _, data = prepare(job.dataset, job.spec, split_seed=job.split_seed, val_fraction=job.val_fraction,
                      source=job.source, device=device)
    classifier = load_checkpoint(job.classifier_path).build(device)
    params: dict[str, Any] = {}
    if job.kind == "retrain":
        ckpt = load_checkpoint(job.retrain_path)
        model, rte = ckpt.build(device), float(ckpt.meta["metrics"]["train_seconds"])
    elif job.kind == "original":
        model, rte = load_checkpoint(job.original_path).build(device), None
    else:
        original = load_checkpoint(job.original_path).build(device)
        res = unlearn.run(job.method, original, data, dict(job.method_config), seed=job.seed, device=str(device))
        model, rte = res.model, res.seconds
        params = {**flatten(res.config, "config."), "method": job.method}
    report = evaluate_generation(model, data, classifier, from_dict(GenEvalConfig, job.evaluation),
                                 classifier_name=job.classifier_name, device=device)
    return {"report": report.to_dict(), "grids": {k: png_base64(v, scale=1) for k, v in report.grids.items()},
            "rte": rte, "params": params}


def plan_gen_jobs(cfg: Any, work_dir: Path, source: DataSource | None,
                  data_key: str = "") -> tuple[list[GenTrainJob], list[GenEvalJob]]:
    """Every training job (classifier, originals, Retrains) and every evaluation job of a
    generation study ``cfg`` (a ``study.generation.GenStudyConfig``), before skipping finished ones.
    Cache paths are keyed by what the model depends on; ``data_key`` (the training set's digest)
    keeps models trained on other data apart."""
    from unlearnbench import unlearn
    from unlearnbench.core.diffusion import DiffusionTrainConfig
    from unlearnbench.core.train import TrainConfig

    split = {"dataset": cfg.dataset, "split_seed": cfg.split_seed, "val_fraction": cfg.val_fraction, "data": data_key[:12]}
    root = Path(work_dir) / "generation" / f"{cfg.dataset}-split{cfg.split_seed}"
    base = dict(dataset=cfg.dataset, split_seed=cfg.split_seed, val_fraction=cfg.val_fraction, source=source)
    trains: list[GenTrainJob] = []
    if cfg.classifier.endswith(".pt"):  # a given checkpoint: keyed by its content, never trained over
        clf_path = str(Path(cfg.classifier).resolve())
        clf_key = hashlib.sha256(Path(clf_path).read_bytes()).hexdigest()[:12]
    else:
        tcfg = to_dict(from_dict(TrainConfig, {**cfg.classifier_train, "device": cfg.device}))
        tcfg.pop("device")
        clf_key = content_key([split, cfg.classifier, tcfg])
        clf_path = str(root / f"classifier-{cfg.classifier}-{clf_key}.pt")
        trains.append(GenTrainJob(kind="classifier", model=cfg.classifier, train={**tcfg, "device": cfg.device},
                                  exclude=None, path=clf_path, **base))
    ev = to_dict(cfg.evaluation)
    evals: list[GenEvalJob] = []
    for seed in cfg.seeds:
        tcfg = to_dict(from_dict(DiffusionTrainConfig, {**cfg.train, "seed": seed, "device": cfg.device}))
        tcfg.pop("device")
        gen_key = content_key([split, cfg.model, tcfg])
        folder = root / f"{cfg.model}-{gen_key}" / f"seed{seed}"
        orig_path = str(folder / "original.pt")
        trains.append(GenTrainJob(kind="original", model=cfg.model, train={**tcfg, "device": cfg.device},
                                  exclude=None, path=orig_path, **base))
        for spec in cfg.forget:
            re_path = str(folder / f"retrain-{spec.replace(':', '').replace(',', '-')}.pt")
            trains.append(GenTrainJob(kind="retrain", model=cfg.model, train={**tcfg, "device": cfg.device},
                                      exclude=spec, path=re_path, **base))
            common = dict(spec=spec, seed=seed, model=cfg.model, device=cfg.device, original_path=orig_path,
                          retrain_path=re_path, classifier_path=clf_path, evaluation={**ev, "seed": seed},
                          models_key=content_key([gen_key, clf_key]), **base)
            evals.append(GenEvalJob(kind="retrain", label="retrain", method="", method_config={}, **common))
            evals.append(GenEvalJob(kind="original", label="original", method="", method_config={}, **common))
            for m in cfg.methods:
                full = to_dict(unlearn.build_config(m.name, dict(m.config), seed=seed))
                evals.append(GenEvalJob(kind="unlearn", label=m.display, method=m.name, method_config=dict(m.config),
                                        full_config=full, **common))
    return trains, evals
