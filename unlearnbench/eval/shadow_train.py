"""Building shadow-model pools (LiRA and U-LiRA): the jobs that train one shadow or one
unlearned/retrained pair (run anywhere: in-process or on Ray) and the driver that plans them, writes
the pool folder and records its hold-out check. The pool format and its statistics are
``eval.shadow``; this module was split from it by concern."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnbench.core import provenance
from unlearnbench.core.checkpoint import save_checkpoint
from unlearnbench.core.config import from_dict, to_dict
from unlearnbench.core.data import DataSource, Splits, UnlearnData, prepare
from unlearnbench.core.errors import ConfigError, UserError
from unlearnbench.core.executor import ExecutorConfig, JobOutcome, run_jobs
from unlearnbench.core.io import atomic_write
from unlearnbench.core.jobs import checkpoint_meta
from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import resolve_device
from unlearnbench.core.train import TrainConfig, accuracy, fit
from unlearnbench.eval.lira import balanced_masks
from unlearnbench.eval.predictions import Predictions
from unlearnbench.eval.shadow import (
    FORMAT,
    HOLDOUT_BOOT,
    ShadowPool,
    _fingerprint,
    lira_holdout,
    population,
    shadow_seed,
    ulira_masks,
    ulira_targets,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- jobs (run anywhere)


def _job_data(spec: dict[str, Any], device: torch.device) -> tuple[Splits, UnlearnData | None]:
    source = DataSource(Path(spec["data_root"]) if spec.get("data_root") else None, False)
    return prepare(spec["dataset"], spec.get("forget"), split_seed=spec["split_seed"],
                   val_fraction=spec["val_fraction"], source=source, device=device)


def _new_model(spec: dict[str, Any], splits: Splits):
    info = splits.info
    return create_model(spec["model"], info.num_classes, info.in_channels, info.image_size, info.mean, info.std)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def lira_shadow_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one LiRA shadow on its IN half of the population; return weights, mask and phi."""
    cfg = from_dict(TrainConfig, {**spec["train_config"], "seed": spec["seed"]})
    device = resolve_device(cfg.device)
    splits, _ = _job_data(spec, device)
    pop = population(splits)
    mask = torch.as_tensor(np.asarray(spec["mask"], dtype=bool))
    model = _new_model(spec, splits)
    result = fit(model, pop.select(mask), splits.val, splits.info, cfg, description=f"shadow {spec['index']}")
    phi = Predictions.of(model, pop).phi.numpy()
    return {
        "state_dict": _cpu_state(model), "mask": np.asarray(spec["mask"], dtype=bool), "phi": phi,
        "seconds": result.seconds, "test_acc": accuracy(model, splits.test),
    }


def ulira_shadow_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Pair ``j``: train ``original_j``, unlearn its forget set ``F_j`` with the pool's method,
    train ``retrained_j`` without ``F_j``; return both models' weights and phi on every candidate."""

    from unlearnbench.unlearn import run as unlearn_run
    from unlearnbench.unlearn.jobs import base_config

    cfg = from_dict(TrainConfig, {**spec["train_config"], "seed": spec["seed"]})
    device = resolve_device(cfg.device)
    splits, data = _job_data(spec, device)
    candidates = data.forget
    in_f = np.asarray(spec["forget_mask"], dtype=bool)
    train_idx = splits.train.idx.cpu().numpy()
    drop = np.isin(train_idx, candidates.idx.cpu().numpy()[in_f])
    own = dataclasses.replace(data, forget=splits.train.select(drop, "forget"), retain=splits.train.select(~drop, "retain"))
    method = spec["method"]
    # The retrained model is the platform's gold reference: the ``retrain`` method with the pool's
    # recipe, exactly as ``unlearnbench unlearn --method retrain`` fills it from the original's
    # checkpoint. So ``--ulira-method retrain`` (the null control) compares two draws of one
    # procedure; it needs no original (retrain re-initialises the weights).
    recipe = base_config("retrain", {"train_config": spec["train_config"]})
    mcfg = {**(recipe if method == "retrain" else {}), **(spec.get("method_config") or {})}
    original = _new_model(spec, splits)
    t_orig = 0.0
    if method != "retrain":
        t_orig = fit(original, splits.train, splits.val, splits.info, cfg, description=f"pair {spec['index']} original").seconds
    outcome = unlearn_run(method, original, own, mcfg, seed=spec["unlearn_seed"], device=str(device))
    unlearned = outcome.model
    ret = unlearn_run("retrain", _new_model(spec, splits), own, recipe, seed=spec["retrain_seed"], device=str(device))
    retrained = ret.model
    return {
        "state_dict": _cpu_state(unlearned), "retrained_state_dict": _cpu_state(retrained),
        "forget_mask": in_f,
        "phi_unlearned": Predictions.of(unlearned, candidates).phi.numpy(),
        "phi_retrained": Predictions.of(retrained, candidates).phi.numpy(),
        "seconds": t_orig + float(outcome.seconds) + float(ret.seconds),
        "unlearn_seconds": float(outcome.seconds),
        "forget_acc": accuracy(unlearned, own.forget), "retrained_forget_acc": accuracy(retrained, own.forget),
    }


# ----------------------------------------------------------------------------- the driver


def _write_json_atomic(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=1)


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path) as fh:  # a file object: np.savez adds no ".npz" suffix
        np.savez(fh, **arrays)


def train_pool(
    out: str | Path,
    *,
    dataset: str,
    model: str,
    n: int,
    config: TrainConfig,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    seed: int = 0,
    source: DataSource | None = None,
    executor: ExecutorConfig | None = None,
    ulira_method: str | None = None,
    forget: str | None = None,
    method_config: dict[str, Any] | None = None,
    targets: int | None = None,
) -> ShadowPool:
    """Train (or finish) a shadow pool in ``out`` and return it loaded."""
    from unlearnbench.core.data import DATASETS
    from unlearnbench.core.models import MODELS

    out = Path(out)
    DATASETS.get(dataset), MODELS.get(model)
    if n < 2:
        raise ConfigError(f"A shadow pool needs at least 2 shadow models, got --n {n}.")
    kind = "ulira" if ulira_method else "lira"
    if kind == "ulira":
        from unlearnbench.unlearn import METHODS, build_config

        METHODS.get(ulira_method)
        build_config(ulira_method, method_config)  # an unknown or bad key fails before any shadow trains
        if not forget:
            raise ConfigError("A U-LiRA pool needs its candidate forget examples: pass --forget SPEC (e.g. random:0.2).")
        targets = n // 2 if targets is None else targets
        if not (2 <= targets <= n - 2):
            raise ConfigError(f"A U-LiRA pool of --n {n} pairs needs 2 to {n - 2} target pairs (--targets), got {targets}; "
                              "the rest are the attacker's shadows.")
    elif forget or targets is not None:
        raise ConfigError("--forget and --targets only apply to U-LiRA pools; add --ulira-method METHOD or drop them.")
    source = source or DataSource.from_env()
    # The driver loads the data once (downloading if asked) to fix the population.
    splits, data = prepare(dataset, forget, split_seed=split_seed, val_fraction=val_fraction, source=source)
    if kind == "ulira" and (data.spec.classwise or len(data.forget) < 2):
        raise ConfigError(
            f"U-LiRA draws each model's forget set from the examples of --forget, so it needs an example-level "
            f"spec with at least 2 examples (e.g. random:0.2), not {str(data.spec)!r}."
        )
    train_idx = splits.train.idx.numpy()
    test_idx = splits.test.idx.numpy()
    pop_info: dict[str, Any] = {"train_idx": train_idx.tolist(), "test_idx": test_idx.tolist()}
    if data is not None:
        pop_info["forget_idx"] = data.forget.idx.numpy().tolist()
    settings = {
        "format": FORMAT, "kind": kind, "dataset": dataset, "model": model, "n": n, "seed": seed,
        "split_seed": split_seed, "val_fraction": val_fraction, "train_config": to_dict(config),
        "population_sha": _fingerprint(train_idx, test_idx, *([data.forget.idx.numpy()] if data is not None else [])),
    }
    if kind == "ulira":
        settings.update(forget=str(data.spec), method=ulira_method, method_config=dict(method_config or {}),
                        targets=targets, protocol="ulira-targets-v1")
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        from unlearnbench.core.boundary import read_text

        try:
            manifest = json.loads(read_text(manifest_path, "Shadow-pool manifest"))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UserError(f"Shadow-pool manifest {manifest_path} is corrupt ({str(exc)[:80]}); use another --out "
                            "folder.") from None
        if not isinstance(manifest, dict):
            raise UserError(f"{manifest_path} is not an unlearnbench shadow-pool manifest; use another --out folder.")
        old = {k: manifest.get(k) for k in settings}
        if json.loads(json.dumps(old)) != json.loads(json.dumps(settings)):
            diff = [k for k in settings if json.dumps(old[k]) != json.dumps(settings[k])]
            raise UserError(f"Shadow pool {out} was built with different settings ({', '.join(diff)}); use another --out folder.")
    else:
        if out.exists() and any(out.iterdir()):
            raise UserError(f"Folder {out} exists and is not a shadow pool; pick an empty or new --out folder.")
        out.mkdir(parents=True, exist_ok=True)
        manifest = {**settings, "population": pop_info, "shadows": [], "provenance": provenance.collect("cpu", seed)}
        _write_json_atomic(manifest_path, manifest)

    done = {s["index"] for s in manifest["shadows"]}
    if kind == "lira":
        masks = balanced_masks(n, len(train_idx) + len(test_idx), seed)
    else:  # each pair forgets a random half of the candidates
        masks = ulira_masks(n, targets, len(data.forget), seed)
    base = {
        "dataset": dataset, "model": model, "split_seed": split_seed, "val_fraction": val_fraction,
        "data_root": str(source.root) if source.root else None, "train_config": to_dict(config),
    }
    todo = [j for j in range(n) if j not in done]
    jobs = []
    for j in todo:
        spec = {**base, "index": j, "seed": shadow_seed(seed, j)}
        if kind == "lira":
            spec["mask"] = masks[j]
        else:
            spec.update(forget=forget, method=ulira_method, method_config=dict(method_config or {}),
                        forget_mask=masks[j], unlearn_seed=shadow_seed(seed, j, 1),
                        retrain_seed=shadow_seed(seed, j, 2))
        jobs.append((spec,))
    meta_base = checkpoint_meta(model, splits, exclude=None, val_fraction=val_fraction)
    failures: list[str] = []

    def on_result(i: int, outcome: JobOutcome) -> None:
        j = todo[i]
        if not outcome.ok:
            failures.append(f"shadow {j}: {outcome.error}")
            log.warning("shadow %d failed: %s", j, outcome.error)
            return
        v = outcome.value
        name = f"shadow_{j:03d}"
        entry = {"index": j, "seed": jobs[i][0]["seed"], "signals": f"{name}.npz", "seconds": v["seconds"]}
        if kind == "lira":
            ckpt = _save_shadow(out / f"{name}.pt", model, v["state_dict"], meta_base, kind="shadow", index=j, seed=entry["seed"])
            _save_npz_atomic(out / entry["signals"], mask=v["mask"], phi=v["phi"])
            entry.update(checkpoint=ckpt, test_acc=v["test_acc"], n_in=int(v["mask"].sum()))
        else:
            # The pair forgot only its half of the candidates: say so next to the candidates' spec.
            half = f"the pair's half of the {forget!r} candidates (forget_mask in {entry['signals']})"
            spec_j = jobs[i][0]
            ck_u = _save_shadow(out / f"{name}_unlearned.pt", model, v["state_dict"], meta_base, kind="unlearn",
                                index=j, seed=entry["seed"], unlearn_seed=spec_j["unlearn_seed"], forget=forget,
                                forget_subset=half, method=ulira_method)
            ck_r = _save_shadow(out / f"{name}_retrained.pt", model, v["retrained_state_dict"], meta_base,
                                kind="retrain", index=j, seed=spec_j["retrain_seed"], exclude=forget, exclude_subset=half)
            _save_npz_atomic(out / entry["signals"], forget_mask=v["forget_mask"], phi_unlearned=v["phi_unlearned"],
                             phi_retrained=v["phi_retrained"])
            entry.update(unlearned=ck_u, retrained=ck_r, unlearn_seconds=v["unlearn_seconds"],
                         forget_acc=v["forget_acc"], retrained_forget_acc=v["retrained_forget_acc"])
        manifest["shadows"] = [s for s in manifest["shadows"] if s["index"] != j] + [entry]
        _write_json_atomic(manifest_path, manifest)

    if jobs:
        worker = lira_shadow_job if kind == "lira" else ulira_shadow_job
        run_jobs(worker, jobs, executor or ExecutorConfig(), description=f"{kind} shadows", on_result=on_result)
    if failures:
        raise UserError(
            f"{len(failures)} of {len(jobs)} shadow jobs failed (first: {failures[0][:200]}); "
            "fix the cause and re-run the same command to finish the pool."
        )
    pool = ShadowPool.load(out)
    if kind == "lira":
        hold = lira_holdout(pool)
        manifest["holdout"] = {k: {**s.values(), **s.counts()} for k, s in hold.items()}
    else:
        # 200 two-stage bootstrap draws (shadow refit + targets): the interval for claims about the method
        res = ulira_targets(pool, bootstrap=HOLDOUT_BOOT, seed=seed)
        manifest["holdout"] = {"ulira": {**res.values(), **res.counts()}}
    _write_json_atomic(manifest_path, manifest)
    return ShadowPool.load(out)


def _save_shadow(path: Path, model_name: str, state_dict: dict, meta_base: dict, **extra: Any) -> str:
    """Write a shadow checkpoint through ``core.checkpoint`` (atomic, weights_only-loadable)."""
    from unlearnbench.core.checkpoint import load_weights

    net = create_model(model_name, meta_base["num_classes"], meta_base["in_channels"], meta_base["image_size"])
    load_weights(net, state_dict, str(path))
    save_checkpoint(path, net, {**meta_base, **extra})
    return path.name
