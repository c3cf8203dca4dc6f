"""What ``unlearnbench ls KIND NAME`` shows: one registry entry in full.

Generic over registries: every entry shows its info (summary, paper, ...) and, where it has a
config class (methods, attacks) or carries config values (presets: method keys; recipes: training
keys), one row per key with its type, default (or the value it sets) and a one-line meaning.

Meanings come, in order, from a field's ``metadata["help"]``, the comment on (or just above) the
field in its class's source, and the glossary below, which covers the keys the built-in configs
share or leave uncommented. A key with none of these shows "-".
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import sys
import typing
from typing import Any

# key -> meaning, or (registry entry name, key) -> meaning where a name means something else there.
GLOSSARY: dict[Any, str] = {
    "seed": "seed of every random draw of the run (init, data order, masks, attack starts)",
    "epochs": "passes over the data",
    "lr": "learning rate",
    "batch_size": "images per optimizer step",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay of the optimizer",
    "nesterov": "Nesterov momentum",
    "augment": "random crop and flip of training batches (on the device)",
    "amp": "bf16 autocast on CUDA",
    "optimizer": "optimizer: sgd or adam",
    "adv_eps": "L∞ radius of the --adv-retain attack (default: per dataset)",
    "adv_steps": "steps of the --adv-retain attack",
    "mixed": "one shuffled loader of relabelled forget + retain rows (the 2023 release) instead of two phases",
    "schedule": "learning-rate schedule: cosine, multistep or constant",
    "milestones": "fractions of training where multistep multiplies the lr by gamma",
    "gamma": "lr factor at each multistep milestone",
    "warmup": "fraction of all steps with linear lr warm-up",
    "label_smoothing": "label smoothing of the cross-entropy",
    "keep_best": "keep the weights of the best validation epoch",
    "cpu_bf16": "bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX)",
    "channels_last": "channels-last memory format (CUDA, and CPU with cpu_bf16)",
    "compile": "run the model through torch.compile",
    "compile_mode": "torch.compile mode (reduce-overhead adds CUDA graphs)",
    "device": "auto, cpu or cuda[:N]",
    "stop_forget_acc": "stop once forget accuracy (%) falls to this value (null: run every epoch)",
    "stop_proxy_acc": "stop once the proxy forget accuracy (%) falls to this value (null: never)",
    "min_epochs": "epochs before the early stop may trigger",
    "mask_ratio": "fraction of weights updated: the most salient ones by forget-loss gradient",
    "mask_batch_size": "batch size of the saliency (gradient) pass",
    "alpha": "strength of the method's extra term",
    ("l1_sparse", "alpha"): "ℓ1 penalty strength at the first epoch (decays linearly per epoch)",
    "no_l1_epochs": "last epochs trained without the ℓ1 penalty",
    "sparsity": "fraction of convolution weights pruned (OMP)",
    "rewind": "rewind surviving weights to a fresh init before the sparse retrain",
    ("influence", "alpha"): "step size of the influence (Woodfisher) update",
    "hessian_samples": "retain samples in the inverse-Fisher estimate",
    "fisher_n": "constant N₀ of the Woodfisher recursion",
    ("ssd", "alpha"): "selection weighting: dampen weights this much more important to the forget set",
    "dampening": "dampening constant λ",
    ("scrub", "alpha"): "weight of the KL to the teacher on retain batches",
    ("scrub", "gamma"): "weight of the cross-entropy on retain batches",
    "msteps": "epochs with a max-step (forget) pass",
    "lr_decay_epochs": "epochs at which the lr is multiplied by lr_decay_rate",
    "lr_decay_rate": "lr factor at each decay epoch",
    "forget_batch_size": "batch size of the forget (max-step) pass",
    "temperature": "distillation temperature",
    "retain_fraction": "fraction of the retain set mixed with the forget set",
    "bound": "FGSM step (pixel space) that finds each forget image's neighbouring label",
    "ood": "surrogate out-of-distribution data: synthetic, or a dataset name",
    "ood_size": "images in the surrogate OOD set",
    "ood_batch_size": "batch size of the OOD distillation",
    "steps_per_forget_batch": "optimizer steps per forget batch",
    "lambda_1": "weight of the forget (Mahalanobis) loss",
    "lambda_2": "weight of the OOD distillation loss",
    "delta": "Tukey power of the feature transform",
    "gamma1": "shrinkage of the class covariance",
    "gamma2": "second shrinkage of the class covariance",
    "stats_source": "data the class statistics are estimated from: retain, val or ood",
    "freeze_bn": "keep BatchNorm running statistics fixed",
    # generation methods (conditional DDPMs)
    "grad_clip": "gradient-norm clip before each step",
    "cond_drop_prob": "probability of replacing a class condition by the null class (classifier-free guidance)",
    "ema": "keep an exponential moving average of the weights (the result)",
    "ema_rate": "EMA decay per step",
    ("ddpm_random_label", "alpha"): "weight of the retain diffusion loss",
    ("ddpm_salun", "alpha"): "weight of the retain diffusion loss (the reference: 1e-3)",
    ("ddpm_grad_ascent", "alpha"): "weight of the retain diffusion loss",
    "mask_guidance": "guidance of the prediction whose loss gives the saliency",
    "negative_guidance": "ESD's eta: how far the forgotten class is pushed away from itself",
    ("ddpm_selective_amnesia", "gamma"): "weight of the generative-replay loss",
    "lmbda": "weight of the EWC (Fisher) penalty",
    "replay_per_class": "replay images generated per remembered class",
    "replay_steps": "DDIM steps of the replay images",
    "fisher_timesteps": "timesteps in the Fisher estimate (the reference: all 1,000)",
    # attacks
    "steps": "iterations",
    ("pgd", "alpha"): "step size (default 2.5·eps/steps)",
    ("pgdl2", "alpha"): "step size (default 2.5·eps/steps)",
    "random_start": "start from a random point in the eps-ball",
    "n_restarts": "random restarts",
    "loss": "loss maximised: ce or dlr",
    "eot_iter": "expectation-over-transformation samples per gradient (randomised models)",
    "rho": "step-size halving threshold of APGD",
    "n_target_classes": "targets tried: the top classes other than the true one",
    "version": "standard, or rand for randomised models",
    "apgd_steps": "APGD iterations per stage",
    "fab_steps": "FAB-T iterations per target",
    "square_queries": "queries of the Square stage",
    "chunk": "points per batch as in the reference (0: the evaluation batch size)",
    "max_batch": "points attacked together (0: 4 chunks on CUDA, 1 on CPU)",
    "checks": "run AutoAttack's sanity checks (zero gradients, Square stronger than gradients)",
    "c": "weight of the misclassification term",
    "kappa": "confidence margin",
    "overshoot": "overshoot of each step",
    "targeted": "targeted FAB (FAB-T) over the top classes",
    "alpha_max": "largest step of FAB's extrapolation",
    "eta": "overshoot of FAB's projection",
    "beta": "FAB's bias towards the original point",
    "n_queries": "queries per point",
    "p_init": "initial fraction of pixels changed per query",
    "resc_schedule": "rescale the p schedule to n_queries (off in AutoAttack)",
}

# Reference implementations of the built-in plug-ins (a plug-in can register ``code=URL`` instead).
REFERENCE_CODE: dict[tuple[str, str], str] = {
    **{("methods", m): "https://github.com/OPTML-Group/Unlearn-Saliency"
       for m in ("salun", "random_label", "finetune", "grad_ascent", "boundary_shrink")},
    **{("methods", m): "https://github.com/OPTML-Group/Unlearn-Sparse" for m in ("l1_sparse", "prune", "retrain", "influence")},
    **{("methods", m): "https://github.com/OPTML-Group/Unlearn-Saliency/tree/main/DDPM"
       for m in ("ddpm_salun", "ddpm_random_label", "ddpm_grad_ascent", "ddpm_retrain", "ddpm_selective_amnesia")},
    ("methods", "ddpm_esd"): "https://github.com/rohitgandikota/erasing",
    ("methods", "scar"): "https://github.com/jbonato1/SCAR",
    ("methods", "scar_self"): "https://github.com/jbonato1/SCAR",
    ("methods", "bad_teacher"): "https://github.com/vikram2000b/bad-teaching-unlearning",
    ("methods", "scrub"): "https://github.com/meghdadk/SCRUB",
    ("methods", "ssd"): "https://github.com/if-loops/selective-synaptic-dampening",
    **{("attacks", a): "https://github.com/fra31/auto-attack" for a in ("autoattack", "autoattack-rand", "apgd", "apgdt")},
    **{("attacks", a): "https://github.com/Harry24k/adversarial-attacks-pytorch"
       for a in ("autoattack-fast", "pgd", "pgdl2", "fgsm", "cw", "deepfool", "fab", "square")},
}


@functools.cache
def _source_comments(cls: type) -> dict[str, str]:
    """Field -> the comment at the end of its line, or on the comment lines right above it."""
    out: dict[str, str] = {}
    for klass in cls.__mro__:
        if not dataclasses.is_dataclass(klass):
            continue
        module = sys.modules.get(klass.__module__)
        try:
            src = inspect.getsource(module) if module else ""
        except (OSError, TypeError):
            continue
        lines = src.splitlines()
        for node in ast.walk(ast.parse(src)):
            if not (isinstance(node, ast.ClassDef) and node.name == klass.__name__):
                continue
            for item in node.body:
                if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                    continue
                line = lines[item.lineno - 1]
                text = line.split("#", 1)[1].strip() if "#" in line else ""
                above = item.lineno - 2
                block: list[str] = []
                while not text and above >= 0 and lines[above].strip().startswith("#"):
                    block.insert(0, lines[above].strip().lstrip("#").strip())
                    above -= 1
                text = text or " ".join(block)
                if text:
                    out.setdefault(item.target.id, text)
    return out


def meaning(cls: type | None, key: str, owner: str = "") -> str:
    if cls is not None and dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name == key and f.metadata.get("help"):
                return str(f.metadata["help"])
        text = _source_comments(cls).get(key)
        if text:
            return text
    return GLOSSARY.get((owner, key)) or GLOSSARY.get(key) or "-"


def type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "(required)"


def config_rows(cls: type, owner: str = "", values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per key: name, type, default, meaning (and the value ``values`` sets, if any).
    With ``values``, only the keys it sets."""
    hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
    fields = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    keys = list(values) if values is not None else list(fields)
    rows = []
    for key in keys:
        f = fields.get(key)
        row = {"key": key, "type": type_name(hints.get(key, f.type if f else "-")),
               "default": _default(f) if f else "-", "meaning": meaning(cls, key, owner)}
        if values is not None:
            row["value"] = values[key]
        rows.append(row)
    return rows


def _related_config(obj: Any) -> tuple[type | None, str, dict[str, Any] | None]:
    """Config values an entry *sets* (a preset: method keys; a recipe: training keys)."""
    if hasattr(obj, "method") and isinstance(getattr(obj, "config", None), dict):
        from unlearnbench.unlearn import METHODS

        return METHODS.info(obj.method).get("config"), obj.method, dict(obj.config)
    if isinstance(getattr(obj, "train", None), dict):
        from unlearnbench.core.train import TrainConfig

        return TrainConfig, "", dict(obj.train)
    return None, "", None


def describe(kind: str, entry: Any) -> dict[str, Any]:
    """Everything known about one registry entry, as plain data (for the table and ``--json``)."""
    info = {k: v for k, v in entry.info.items() if k != "summary" and not inspect.isfunction(v)}
    out: dict[str, Any] = {"kind": kind, "name": entry.name, "summary": entry.summary}
    cls = info.pop("config", None)
    for k, v in info.items():
        out[k] = v.__name__ if isinstance(v, type) else v
    if kind in ("methods", "attacks") or "paper" in info:
        out.setdefault("paper", info.get("paper") or "-")
        out["code"] = info.get("code") or REFERENCE_CODE.get((kind, entry.name), "-")
    obj = entry.obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name not in out and not isinstance(value, dict) and f.name != "name":
                out[f.name] = value
    if kind == "methods":
        from unlearnbench.unlearn.recipes import recipes_by_regime

        out["recipes"] = recipes_by_regime(entry.name)  # where unlearn's config starts, by the data's shape
    if cls is not None and dataclasses.is_dataclass(cls):
        out["config_class"] = cls.__name__
        out["config"] = config_rows(cls, entry.name)
    else:
        rel, owner, values = _related_config(obj)
        if rel is not None and values is not None:
            out["config_class"] = rel.__name__
            out["sets"] = config_rows(rel, owner, values)
    return out
