"""Contract suite over every registered method (digits, forget class 3, the session cnn).

For each method: the input model is untouched, the same seed gives bit-identical weights on the
CPU, the output is finite and in eval mode, the run time (RTE) is recorded, the sets it reads are
exactly the ones it declares, retain-free settings never read the retain set, and with
``prune`` the pruned weights stay exactly zero.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from unlearn_helpers import FAST, recording, with_raising_retain

from unlearnbench.core.errors import ConfigError, UnknownNameError
from unlearnbench.unlearn import METHODS, build_config, run
from unlearnbench.unlearn.base import GuardedSet, UndeclaredReadError, declared_reads, guarded_view, methods_for
from unlearnbench.unlearn.prune import conv_weights

METHOD_NAMES = methods_for("classification")  # generation methods: test_generation_contract.py


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fast_configs_cover_every_method():
    assert set(FAST) == set(METHOD_NAMES)


def test_registry_info_is_complete():
    for entry in METHODS.entries():
        info = entry.info
        assert info["summary"] and info["paper"].startswith("https://")
        assert set(info["reads"]) <= {"forget", "retain", "val", "ood"}
        assert dataclasses.is_dataclass(info["config"]) and "seed" in {f.name for f in dataclasses.fields(info["config"])}
        # each plug-in's module docstring cites its paper
        module = __import__(entry.obj.__module__, fromlist=["_"])
        assert info["paper"] in module.__doc__


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_contract(method, digits_cnn, digits_class3, small_ood):
    before = _state(digits_cnn)
    was_training = digits_cnn.training
    log: set[str] = set()
    first = run(method, digits_cnn, recording(digits_class3, small_ood, log), FAST[method], seed=0, device="cpu")
    # reads are exact: the method touched precisely the sets it declares
    assert log == set(declared_reads(method, first.config)), f"{method} read {sorted(log)}"
    # the input model is untouched (weights, buffers, mode) and the output is a new eval-mode model
    assert _same(before, _state(digits_cnn)) and digits_cnn.training == was_training
    assert first.model is not digits_cnn and not first.model.training
    assert all(torch.isfinite(t).all() for t in first.model.state_dict().values() if t.is_floating_point())
    assert first.seconds > 0 and first.method == method and first.config.seed == 0
    # same seed, same weights (CPU)
    second = run(method, digits_cnn, dataclasses.replace(digits_class3, extras={"ood": small_ood}),
                 FAST[method], seed=0, device="cpu")
    assert _same(_state(first.model), _state(second.model)), f"{method} is not reproducible"


def _retain_free_cases():
    cases = []
    for name in METHOD_NAMES:
        variants = [{}]
        if name in ("scar", "scar_self"):
            variants = [{"stats_source": "val"}, {"stats_source": "ood"}]
        for extra in variants:
            cfg = {**FAST[name], **extra}
            if "retain" not in declared_reads(name, build_config(name, cfg)):
                cases.append(pytest.param(name, cfg, id=f"{name}-{extra.get('stats_source', 'default')}"))
    return cases


RETAIN_FREE = _retain_free_cases()


def test_retain_free_cases_are_the_expected_ones():
    ids = {c.id for c in RETAIN_FREE}
    assert {"grad_ascent-default", "boundary_shrink-default", "scar-val", "scar-ood", "scar_self-val",
            "scar_self-ood"} <= ids
    assert not any(i.startswith(("finetune", "salun", "retrain", "ssd")) for i in ids)


@pytest.mark.parametrize("method,cfg", RETAIN_FREE)
def test_retain_free_methods_never_read_the_retain_set(method, cfg, digits_cnn, digits_class3, small_ood):
    data = dataclasses.replace(with_raising_retain(digits_class3), extras={"ood": small_ood})
    out = run(method, digits_cnn, data, cfg, seed=0, device="cpu")
    assert out.seconds > 0


def test_scar_reads_follow_stats_source():
    reads = {s: declared_reads("scar", build_config("scar", {"stats_source": s})) for s in ("retain", "val", "ood")}
    assert set(reads["retain"]) == {"forget", "retain", "ood"}
    assert set(reads["val"]) == {"forget", "val", "ood"}
    assert set(reads["ood"]) == {"forget", "ood"}
    assert "forget" not in declared_reads("scar_self", build_config("scar_self"))


def test_guard_raises_on_undeclared_sets(digits_class3):
    view = guarded_view(digits_class3, ("forget",), "demo", torch.device("cpu"))
    assert len(view.forget) == len(digits_class3.forget)
    for s in (view.retain, view.val, view.test, view.test_retained):
        assert isinstance(s, GuardedSet)
        with pytest.raises(UndeclaredReadError, match="demo"):
            len(s)
        with pytest.raises(UndeclaredReadError):
            s.x  # noqa: B018


@pytest.mark.parametrize("method", [m for m in METHOD_NAMES if m != "prune"])
def test_prune_first_keeps_pruned_weights_zero(method, digits_cnn, digits_class3, small_ood):
    data = dataclasses.replace(digits_class3, extras={"ood": small_ood})
    out = run(method, digits_cnn, data, FAST[method], prune=0.9, seed=0, device="cpu")
    weights = torch.cat([w.detach().flatten() for _, w in conv_weights(out.model)])
    n_pruned = int(round(0.9 * weights.numel()))
    assert int((weights == 0).sum()) >= n_pruned
    assert out.info["pruned_sparsity"] == n_pruned / weights.numel()


def test_run_rejects_bad_requests(digits_cnn, digits_class3):
    with pytest.raises(UnknownNameError, match="Did you mean 'salun'"):
        run("salunn", digits_cnn, digits_class3)
    with pytest.raises(ConfigError, match="Unknown config key 'lrr'"):
        run("salun", digits_cnn, digits_class3, {"lrr": 0.1})
    with pytest.raises(ConfigError, match="prune"):
        run("finetune", digits_cnn, digits_class3, prune=1.5)
    with pytest.raises(ConfigError, match="sparsity"):
        run("prune", digits_cnn, digits_class3, prune=0.5)
    with pytest.raises(ConfigError, match="retain set"):
        run("grad_ascent", digits_cnn, digits_class3, adv_retain="pgd")
    with pytest.raises(ConfigError, match="class-wise"):
        import unlearnbench.core.data as d

        _, rnd = d.prepare("digits", "random:0.1")
        run("scar_self", digits_cnn, rnd, {"ood_size": 64})


def test_seed_argument_wins_over_config_seed(digits_cnn, digits_class3):
    with pytest.warns(UserWarning, match="replaced"):
        cfg = build_config("finetune", {"seed": 3}, seed=1)
    assert cfg.seed == 1


@pytest.mark.parametrize("method", [m for m in METHOD_NAMES if m != "scar_self"])
def test_random_forgetting_runs_every_method(method, digits_cnn, digits_random, small_ood):
    """Random (non-class-wise) specs take other branches (SCAR: no selective teacher, all classes)."""
    data = dataclasses.replace(digits_random, extras={"ood": small_ood})
    out = run(method, digits_cnn, data, FAST[method], seed=1, device="cpu")
    assert all(torch.isfinite(t).all() for t in out.model.state_dict().values() if t.is_floating_point())
    if method != "ssd":  # a random forget set looks like the training set: SSD rightly selects nothing
        assert not _same(_state(out.model), _state(digits_cnn))  # it did something


# Each method's own config checks at their boundaries: (method, field, accepted, refused). The
# limits are the ones the checks' messages promise (and the math needs: a temperature divides,
# a decay rate of 1 means no decay, a batch of one row is a batch).
CONFIG_LIMITS = [
    ("scrub", "msteps", [0, 5], [-1, 6]),  # 0..epochs (5 by default)
    ("scrub", "forget_batch_size", [1], [0]),
    ("scrub", "temperature", [1e-3], [0.0, -1.0]),
    ("scrub", "lr_decay_rate", [1e-3, 1.0], [0.0, 1.01]),
    ("bad_teacher", "retain_fraction", [0.0, 1.0], [-0.01, 1.01]),
    ("bad_teacher", "temperature", [1e-3], [0.0, -1.0]),
    ("ssd", "alpha", [1e-3], [0.0, -1.0]),
    ("ssd", "dampening", [1e-3], [0.0, -1.0]),
    ("ssd", "batch_size", [1], [0]),
    ("boundary_shrink", "bound", [1e-3, 1.0], [0.0, 1.01]),
    ("influence", "alpha", [1e-3], [0.0, -1.0]),
    ("influence", "hessian_samples", [1], [0]),
    ("influence", "fisher_n", [1e-3], [0.0, -1.0]),
    ("influence", "batch_size", [1], [0]),
    ("grad_ascent", "stop_forget_acc", [None, 0.0, 100.0], [-0.5, 100.5]),
    ("retrain", "warmup", [0.0, 0.99], [-0.01, 1.0, 1.5]),
    ("retrain", "label_smoothing", [0.0, 0.99], [-0.01, 1.0, 1.5]),
    ("retrain", "milestones", [(0.01, 0.99), ()], [(0.0,), (1.0,), (0.5, 1.0)]),
]


@pytest.mark.parametrize(("method", "key", "accepted", "refused"), CONFIG_LIMITS,
                         ids=[f"{m}-{k}" for m, k, _, _ in CONFIG_LIMITS])
def test_method_configs_accept_their_limits_and_refuse_beyond(method, key, accepted, refused):
    for value in accepted:
        assert getattr(build_config(method, {key: value}), key) == value
    for value in refused:
        with pytest.raises(ConfigError):
            build_config(method, {key: value})


@pytest.mark.parametrize("method", [m for m in METHOD_NAMES
                                    if "augment" in {f.name for f in dataclasses.fields(METHODS.info(m)["config"])}])
def test_training_methods_augment_and_use_amp_by_default(method):
    """docs/unlearn.md: ``augment`` defaults to on (the references train with their augmentation);
    README: the loop uses bf16 autocast on CUDA (``amp``, a no-op on CPUs)."""
    cfg = build_config(method)
    assert cfg.augment is True and cfg.amp is True


# The defaults each method's module docstring states (its paper's reference values where it says
# so, else the digits values it gives): a changed default changes every number run without a config.
DOCUMENTED_DEFAULTS = {
    "scrub": dict(epochs=5, msteps=3, lr=0.01, optimizer="sgd", momentum=0.9, weight_decay=5e-4, gamma=0.99,
                  alpha=0.001, temperature=4.0, lr_decay_epochs=(3, 5, 9), lr_decay_rate=0.1, forget_batch_size=64,
                  batch_size=64, adv_steps=10),
    "bad_teacher": dict(optimizer="adam", lr=1e-3, epochs=5, batch_size=64, retain_fraction=0.3),
    "ssd": dict(alpha=100.0, dampening=1.0, batch_size=64),
    "boundary_shrink": dict(bound=0.15, lr=2e-3, epochs=10, batch_size=64, momentum=0.9, weight_decay=5e-4),
    "influence": dict(alpha=0.5, hessian_samples=1000),
    "finetune": dict(lr=0.01, epochs=10, momentum=0.9, weight_decay=5e-4, batch_size=64, adv_steps=10),
    "grad_ascent": dict(lr=1e-3, epochs=20, stop_forget_acc=15.0, momentum=0.9, weight_decay=5e-4),
}


@pytest.mark.parametrize("method", list(DOCUMENTED_DEFAULTS))
def test_method_defaults_are_the_documented_ones(method):
    cfg = build_config(method)
    assert {k: getattr(cfg, k) for k in DOCUMENTED_DEFAULTS[method]} == DOCUMENTED_DEFAULTS[method]


def test_retrain_defaults_are_the_digits_training_recipe():
    """retrain.py: "the defaults here are the digits recipe" (what ``unlearnbench train`` uses on
    digits), so a retrain reference without a checkpoint's train_config is trained like the original."""
    from unlearnbench.core.recipes import RECIPES

    recipe = dataclasses.asdict(RECIPES.get("digits").config())
    cfg = dataclasses.asdict(build_config("retrain"))
    shared = sorted(set(cfg) & set(recipe) - {"seed"})
    assert len(shared) >= 14
    assert {k: cfg[k] for k in shared} == {k: recipe[k] for k in shared}
    assert cfg["adv_steps"] == 10  # docs/unlearn.md, as every retain-training method


TRAINING_METHODS = ["finetune", "grad_ascent", "boundary_shrink", "bad_teacher", "scrub", "retrain"]


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("method", TRAINING_METHODS)
def test_training_methods_hand_their_config_to_the_loop(monkeypatch, digits_cnn, digits_class3, method, augment):
    """What the config says reaches the optimizer and the epoch loop: lr, momentum, weight decay,
    epochs, batch size, amp, and augmentation on every phase exactly when ``augment`` is on."""
    import importlib

    mod = importlib.import_module(f"unlearnbench.unlearn.{method}")
    loops, optimizers = [], []
    real_opt = mod.make_optimizer
    monkeypatch.setattr(mod, "make_optimizer", lambda m, *a, **k: optimizers.append((a, k)) or real_opt(m, *a, **k))
    monkeypatch.setattr(mod, "run_epochs", lambda model, phases, **k: loops.append((list(phases), k)) or [])
    fields = {f.name for f in dataclasses.fields(METHODS.info(method)["config"])}
    values = dict(epochs=3, lr=0.0123, batch_size=17, weight_decay=1e-3, augment=augment, amp=not augment)
    if "momentum" in fields:
        values["momentum"] = 0.55
    cfg = build_config(method, values)
    METHODS.get(method)(copy.deepcopy(digits_cnn), digits_class3, cfg)
    (phases, kw), = loops
    assert kw["epochs"] == 3 and kw["amp"] is (not augment)
    assert phases and all(p.augment == (digits_class3.info if augment else None) for p in phases)
    sizes = {p.batch_size for p in phases}
    assert 17 in sizes and sizes <= {17, getattr(cfg, "forget_batch_size", 17)}
    (args, opt_kw), = optimizers
    assert opt_kw["lr"] == 0.0123 and opt_kw["weight_decay"] == 1e-3
    assert opt_kw.get("momentum", 0.9) == (0.55 if "momentum" in fields else 0.9)
    if "optimizer" in fields:
        assert args == (cfg.optimizer,)
