"""Generation studies: class-wise unlearning of a conditional DDPM, every method against Retrain.

A study file with ``task: generation`` (``unlearnbench benchmark digits-generation``):

1. **Classifier** (cached): a platform classifier of the same data (``classifier``, trained on the
   full training split) that scores the samples; its checkpoint path is named in every result.
2. **Original** per seed and **Retrain** per (forget spec, seed) (cached): ``core.jobs.train_generator``
   on the same split, the retrain without the forgotten class.
3. **Methods**: ``unlearn.run`` on the original (the RTE is the method call).
4. **Evaluation** of every model (original, retrain, methods) by ``eval.generation``: UA with the
   classifier, FID against the real test images of the remembered classes (extractor named),
   precision / recall, and sample grids (forgotten vs remembered classes).

Each model is a child MLflow run under one parent run (metrics, params, grids as PNG artifacts);
``reports.generation.write_gen_report`` then writes the report (Markdown + HTML with the grids
inlined) and logs it to the parent run.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from unlearnbench.core.config import configclass, flatten, from_dict, to_dict
from unlearnbench.core.data import DataSource, parse_forget_spec
from unlearnbench.core.errors import ConfigError
from unlearnbench.eval.generation import GenEvalConfig, GenReport, evaluate_generation
from unlearnbench.eval.intervals import t_interval

log = logging.getLogger(__name__)


@configclass
class GenMethodSpec:
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


@configclass
class GenExpected:
    """The paper's numbers for one forget spec: method -> {UA, FID, ...} as printed."""

    forget: str
    citation: str
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: str = ""
    note: str = ""  # e.g. why the numbers are missing: shown in the report, never a number made up


@configclass
class GenStudyConfig:
    name: str
    task: Literal["generation"] = "generation"
    dataset: str = "digits"
    model: str = "ddpm_tiny"
    classifier: str = "cnn"  # a registered classifier trained on the same split, or a checkpoint path (.pt)
    classifier_train: dict[str, Any] = field(default_factory=dict)  # TrainConfig keys
    forget: tuple[str, ...] = ("class:3",)
    seeds: tuple[int, ...] = (0,)
    split_seed: int = 0
    val_fraction: float = 0.1
    train: dict[str, Any] = field(default_factory=dict)  # DiffusionTrainConfig keys (original and Retrain)
    methods: tuple[GenMethodSpec, ...] = ()
    evaluation: GenEvalConfig = field(default_factory=GenEvalConfig)
    experiment: str = ""
    device: str = "auto"
    differences: tuple[str, ...] = ()
    expected: tuple[GenExpected, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        from unlearnbench.core.diffusion import DiffusionTrainConfig
        from unlearnbench.core.models import model_task
        from unlearnbench.unlearn import METHODS, build_config
        from unlearnbench.unlearn.base import method_task

        if model_task(self.model) != "generation":
            raise ConfigError(f"A generation study needs a generation model; {self.model!r} is a classifier.")
        if not self.methods or not self.forget or not self.seeds:
            raise ConfigError("A generation study needs methods, forget specs and seeds.")
        for spec in self.forget:
            if not parse_forget_spec(spec).classwise:
                raise ConfigError(f"Generation unlearning forgets whole classes: use class:C, not {spec!r}.")
        labels = [m.display for m in self.methods]
        if len(set(labels)) != len(labels):
            raise ConfigError("A method appears twice; give one entry a distinct label.")
        for m in self.methods:
            METHODS.get(m.name)
            if method_task(m.name) != "generation":
                raise ConfigError(f"Method {m.name!r} unlearns classifiers; a generation study takes the "
                                  f"generation methods (unlearnbench ls methods).")
            build_config(m.name, dict(m.config))  # unknown keys: one sentence, before any work
        from_dict(DiffusionTrainConfig, dict(self.train))
        for block in self.expected:
            if block.forget not in self.forget:
                raise ConfigError(f"expected names forget spec {block.forget!r}, which the study does not run.")

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


def gen_study_from_dict(data: dict[str, Any], **cli: Any) -> GenStudyConfig:
    data = dict(data)
    over = {k: v for k, v in cli.items() if v is not None}
    data.update(over)
    data["methods"] = [from_dict(GenMethodSpec, m) if isinstance(m, dict) else m for m in data.get("methods", [])]
    data["expected"] = [from_dict(GenExpected, e) if isinstance(e, dict) else e for e in data.get("expected", [])]
    if isinstance(data.get("evaluation"), dict):
        data["evaluation"] = from_dict(GenEvalConfig, data["evaluation"])
    return from_dict(GenStudyConfig, data)


# ----------------------------------------------------------------------------- running


@dataclass
class GenRow:
    kind: str  # original | retrain | unlearn
    label: str
    forget: str
    seed: int
    report: GenReport
    rte: float | None = None
    run_id: str = ""


@dataclass
class GenStudyResult:
    study: str
    experiment: str
    tracking_uri: str
    parent_run_id: str
    rows: list[GenRow]
    classifier: str
    report_md: Path | None = None
    report_html: Path | None = None
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _cached(path: Path, make: Callable[[], Any]):
    """Load ``path`` if it exists, else build the outcome with ``make`` and save it there."""
    from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint

    if path.is_file():
        return load_checkpoint(path)
    outcome = make()
    save_checkpoint(path, outcome.model, outcome.meta)
    return load_checkpoint(path)


def run_gen_study(cfg: GenStudyConfig, *, tracking_uri: str | None = None, work_dir: Path = Path("runs/cache"),
                  source: DataSource | None = None, on_event: Callable[[str], None] | None = None) -> GenStudyResult:
    from unlearnbench import unlearn as U
    from unlearnbench.core.checkpoint import load_checkpoint
    from unlearnbench.core.data import prepare
    from unlearnbench.core.diffusion import DiffusionTrainConfig
    from unlearnbench.core.jobs import train_generator, train_model
    from unlearnbench.core.runtime import resolve_device
    from unlearnbench.core.train import TrainConfig
    from unlearnbench.eval import tracking

    say = on_event or (lambda text: log.info("%s", text))
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    uri = tracking.setup(tracking_uri, cfg.experiment_name)
    split = {"dataset": cfg.dataset, "split_seed": cfg.split_seed, "val_fraction": cfg.val_fraction,
             "source": str(source.subset if source else None)}
    root = Path(work_dir) / "generation" / f"{cfg.dataset}-split{cfg.split_seed}"

    # 1. the evaluating classifier
    if cfg.classifier.endswith(".pt"):
        clf_ckpt = load_checkpoint(cfg.classifier)
    else:
        tcfg = from_dict(TrainConfig, {**cfg.classifier_train, "device": cfg.device})
        clf_path = root / f"classifier-{cfg.classifier}-{_key([split, to_dict(tcfg)])}.pt"
        say(f"classifier {cfg.classifier}: {'cached' if clf_path.is_file() else 'training'} ({clf_path})")
        clf_ckpt = _cached(clf_path, lambda: train_model(cfg.dataset, cfg.classifier, tcfg, split_seed=cfg.split_seed,
                                                         val_fraction=cfg.val_fraction, source=source))
    classifier = clf_ckpt.build(device)
    clf_name = f"{clf_ckpt.meta['model']} ({clf_ckpt.path}, test acc {clf_ckpt.meta.get('metrics', {}).get('test_acc', float('nan')):.1f}%)"

    rows: list[GenRow] = []
    failures: list[tuple[str, str]] = []
    total = len(cfg.seeds) * (1 + len(cfg.forget) * (1 + len(cfg.methods)))
    parent_tags = {"kind": "study", "task": "generation", "dataset": cfg.dataset, "model": cfg.model,
                   "study": cfg.name}
    with tracking.run(f"{cfg.name} (generation study)", params={"study": json.dumps(to_dict(cfg), default=str)[:6000]},
                      tags=parent_tags) as parent:
        import mlflow

        if cfg.description:
            mlflow.set_tag("mlflow.note.content", cfg.description)
        for seed in cfg.seeds:
            tcfg = from_dict(DiffusionTrainConfig, {**cfg.train, "seed": seed, "device": cfg.device})
            gen_key = _key([split, cfg.model, to_dict(tcfg)])
            orig_path = root / f"{cfg.model}-{gen_key}" / f"seed{seed}" / "original.pt"
            say(f"original {cfg.model} seed {seed}: {'cached' if orig_path.is_file() else 'training'}")
            orig_ckpt = _cached(orig_path, lambda tcfg=tcfg: train_generator(
                cfg.dataset, cfg.model, tcfg, split_seed=cfg.split_seed, val_fraction=cfg.val_fraction, source=source))
            original = orig_ckpt.build(device)
            for spec in cfg.forget:
                _, data = prepare(cfg.dataset, spec, split_seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                                  source=source, device=device)
                ecfg = from_dict(GenEvalConfig, {**to_dict(cfg.evaluation), "seed": seed})
                tag = spec.replace(":", "")
                re_path = root / f"{cfg.model}-{gen_key}" / f"seed{seed}" / f"retrain-{tag}.pt"
                say(f"retrain without {spec}, seed {seed}: {'cached' if re_path.is_file() else 'training'}")
                re_ckpt = _cached(re_path, lambda tcfg=tcfg, spec=spec: train_generator(
                    cfg.dataset, cfg.model, tcfg, exclude=spec, split_seed=cfg.split_seed, val_fraction=cfg.val_fraction,
                    source=source))
                jobs = [("retrain", "retrain", None), ("original", "original", None)]
                jobs += [("unlearn", m.display, m) for m in cfg.methods]
                for kind, label, m in jobs:
                    say(f"{label} on {spec}, seed {seed}")
                    try:
                        params: dict[str, Any] = {}
                        if kind == "retrain":
                            model, rte = re_ckpt.build(device), float(re_ckpt.meta["metrics"]["train_seconds"])
                        elif kind == "original":
                            model, rte = original, None
                        else:
                            res = U.run(m.name, original, data, dict(m.config), seed=seed, device=str(device))
                            model, rte = res.model, res.seconds
                            params = {**flatten(res.config, "config."), "method": m.name}
                        report = evaluate_generation(model, data, classifier, ecfg, classifier_name=clf_name, device=device)
                    except Exception as exc:  # one failing method must not lose the others
                        from unlearnbench.core.errors import UserError

                        if isinstance(exc, UserError):
                            raise
                        log.exception("%s failed", label)
                        failures.append((f"{label} {spec} seed{seed}", f"{type(exc).__name__}: {exc}"))
                        continue
                    row = GenRow(kind, label, spec, seed, report, rte)
                    row.run_id = _log_row(row, params, cfg, parent.info.run_id, clf_name)
                    rows.append(row)
        result = GenStudyResult(cfg.name, cfg.experiment_name, uri, parent.info.run_id, rows, clf_name,
                                seconds=time.perf_counter() - t_start, failures=failures, total=total)
        tracking.log_metrics({"study_seconds": result.seconds})
    return result


def _log_row(row: GenRow, params: dict, cfg: GenStudyConfig, parent_id: str, clf_name: str) -> str:
    import tempfile

    from unlearnbench.core.diffusion import save_png
    from unlearnbench.eval import tracking

    tags = {"kind": row.kind, "task": "generation", "method": row.label, "dataset": cfg.dataset, "model": cfg.model,
            "forget": row.forget, "seed": row.seed}
    name = tracking.readable_run_name(row.kind, method=row.label if row.kind == "unlearn" else "", dataset=cfg.dataset,
                                      model=cfg.model, forget=row.forget, seed=row.seed)
    with tracking.run(name, params={**params, "classifier": clf_name[:250], "extractor": row.report.meta["extractor"][:250]},
                      tags=tags, parent_run_id=parent_id) as active:
        tracking.log_metrics({**row.report.values, **{k: float(v) for k, v in row.report.counts.items()},
                              **({"rte_seconds": row.rte} if row.rte is not None else {}),
                              "eval_seconds": row.report.seconds})
        with tempfile.TemporaryDirectory() as tmp:
            for gname, img in row.report.grids.items():
                p = Path(tmp) / f"{gname}.png"
                save_png(img, p, scale=4)
                tracking.log_artifact(p, "samples")
            p = Path(tmp) / "report.json"
            p.write_text(json.dumps({**row.report.to_dict(), "kind": row.kind, "label": row.label, "forget": row.forget,
                                     "seed": row.seed, "rte_seconds": row.rte}, indent=2, default=str))
            tracking.log_artifact(p)
        return active.info.run_id


# ----------------------------------------------------------------------------- summaries


def summarize(rows: list[GenRow], forget: str) -> list[dict[str, Any]]:
    """One line per model label for ``forget``: means over seeds (a t interval with ≥ 2 seeds; with
    one seed the per-run interval: Wilson for UA, bootstrap for FID)."""
    order: list[str] = []
    for r in rows:
        if r.forget == forget and r.label not in order:
            order.append(r.label)
    out = []
    for label in order:
        rs = [r for r in rows if r.forget == forget and r.label == label]
        line: dict[str, Any] = {"label": label, "kind": rs[0].kind, "seeds": len(rs)}
        for key in ("gen/ua", "gen/fid", "gen/precision", "gen/recall", "gen/acc_retained", "gen/entropy",
                    "gen/forgotten_prob"):
            vals = [r.report.values[key] for r in rs if key in r.report.values]
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            if len(vals) >= 2:
                ci = t_interval(vals)
            else:
                v = rs[0].report.values
                ci = (v[f"{key}_lo"], v[f"{key}_hi"]) if f"{key}_lo" in v else None
            line[key] = (mean, ci)
        counts = rs[0].report.counts
        line["n_ua"] = counts.get("n/gen/ua")
        line["n_fid"] = (counts.get("n/gen/fid_generated"), counts.get("n/gen/fid_real"))
        rtes = [r.rte for r in rs if r.rte is not None]
        line["rte"] = (sum(rtes) / len(rtes)) if rtes else None
        line["grids"] = rs[0].report.grids
        out.append(line)
    return out


def png_base64(image: torch.Tensor, scale: int = 4) -> str:
    """A (C, H, W) [0, 1] image as base64 PNG (for HTML reports that inline their images)."""
    from PIL import Image

    img = image.repeat_interleave(scale, -1).repeat_interleave(scale, -2) if scale > 1 else image
    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def fmt(value: tuple[float, tuple[float, float] | None] | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    mean, ci = value
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else f"{mean:.{digits}f}"
