"""Method protocols of the papers' code (issue #12 part 2): SCAR random forgetting (early stop and
per-class weighting), SalUn's mask modes and Table 1 preset, the paper presets."""

from __future__ import annotations

import copy
import dataclasses
import logging

import pytest
import torch
import torch.nn as nn
from unlearn_helpers import recording

import unlearnbench.unlearn.scar as scar_mod
from unlearnbench.core.config import from_dict
from unlearnbench.core.data import TensorSet
from unlearnbench.core.train import accuracy
from unlearnbench.unlearn import METHODS, build_config, run
from unlearnbench.unlearn.base import declared_reads
from unlearnbench.unlearn.loops import Stepper, make_optimizer
from unlearnbench.unlearn.masks import saliency_mask
from unlearnbench.unlearn.presets import PRESET_DIR, PRESETS
from unlearnbench.unlearn.scar import class_weights, forget_accuracy_by_class, stop_target

# ============================================================================ SCAR, random forgetting


def test_scar_class_weights_drop_classes_below_the_threshold():
    acc = torch.tensor([0.9, 0.5, 0.8, 0.79, 1.0, 0.0])
    torch.testing.assert_close(class_weights(acc, 0.8), torch.tensor([0.9, 0.0, 0.8, 0.0, 1.0, 0.0]))
    torch.testing.assert_close(class_weights(acc, 0.4), torch.tensor([0.9, 0.5, 0.8, 0.79, 1.0, 0.0]))


class _Constant(nn.Module):
    """Predicts class 1 for every image."""

    def forward(self, x):
        return torch.tensor([0.0, 1.0, 0.0]).expand(len(x), 3)


def test_forget_accuracy_by_class_on_a_constant_model():
    y = torch.tensor([0, 1, 1, 1, 0])
    data = TensorSet(torch.zeros(5, 1, 2, 2, dtype=torch.uint8), y, torch.arange(5))
    per_class, overall = forget_accuracy_by_class(_Constant(), data, 3)
    torch.testing.assert_close(per_class, torch.tensor([0.0, 1.0, 0.0]))  # class 2 is absent: 0
    assert overall == pytest.approx(60.0)


def test_scar_stop_target_per_spec(digits_cnn, digits_class3, digits_random):
    cfg = build_config("scar")
    assert stop_target(cfg, digits_class3, digits_cnn) == 1.0
    val_acc = accuracy(digits_cnn, digits_random.val)
    assert stop_target(cfg, digits_random, digits_cnn) == pytest.approx(val_acc - 1.5)
    assert stop_target(build_config("scar", {"stop_margin": None}), digits_random, digits_cnn) is None
    assert stop_target(build_config("scar", {"stop_forget_acc": 40.0}), digits_random, digits_cnn) == 40.0
    no_val = dataclasses.replace(digits_random, val=digits_random.val.select(torch.zeros(0, dtype=torch.long)))
    assert stop_target(cfg, no_val, digits_cnn) is None  # no target rather than NaN


def _scar_data(data, ood):
    return dataclasses.replace(data, extras={"ood": ood})


RANDOM_CFG = {"epochs": 12, "min_epochs": 0, "ood_size": 256, "ood_batch_size": 64, "lr": 3e-3}


def test_scar_random_forgetting_stops_early_below_val_accuracy_minus_margin(monkeypatch, caplog, digits_cnn,
                                                                          digits_random, small_ood):
    data = _scar_data(digits_random, small_ood)
    target = accuracy(digits_cnn, digits_random.val) - 1.5
    assert accuracy(digits_cnn, digits_random.forget) > target  # the original is above the target
    calls = []
    original = scar_mod.forget_term
    monkeypatch.setattr(scar_mod, "forget_term", lambda *a, **k: calls.append(a) or original(*a, **k))
    with caplog.at_level(logging.INFO, logger="unlearnbench.unlearn.scar"):
        out = run("scar", digits_cnn, data, RANDOM_CFG, device="cpu")
    max_steps = 12 * 6  # one forget batch per epoch, 6 steps each
    assert len(calls) < max_steps
    assert any("early stop" in r.getMessage() for r in caplog.records)
    # it stopped at the first step whose forget accuracy fell below the target
    assert accuracy(out.model, digits_random.forget) < target
    # without the stop rule it runs every step
    calls.clear()
    run("scar", digits_cnn, data, {**RANDOM_CFG, "epochs": 2, "stop_margin": None}, device="cpu")
    assert len(calls) == 2 * 6


def test_scar_random_forgetting_weights_the_forget_term_by_class_accuracy(monkeypatch, digits_cnn, digits_random,
                                                                           small_ood):
    calls = []
    original = scar_mod.forget_term
    monkeypatch.setattr(scar_mod, "forget_term", lambda *a, **k: calls.append(a) or original(*a, **k))
    cfg = {"epochs": 1, "min_epochs": 0, "ood_size": 256, "steps_per_forget_batch": 1, "weight_threshold": 0.999}
    run("scar", digits_cnn, _scar_data(digits_random, small_ood), cfg, device="cpu")
    _, _, _, weights = calls[0]
    # first step: the original's per-class accuracy on the forget set, classes below 0.999 dropped
    acc, _ = forget_accuracy_by_class(digits_cnn, digits_random.forget, 10)
    expected = torch.where(acc >= 0.999, acc, torch.zeros_like(acc))[digits_random.forget.y]
    torch.testing.assert_close(weights, expected)
    assert bool((weights == 1).any())
    # class-wise forgetting and class_weighting: false use w = 1
    calls.clear()
    run("scar", digits_cnn, _scar_data(digits_random, small_ood), {**cfg, "class_weighting": False}, device="cpu")
    assert calls[0][3] is None


def test_scar_reads_val_for_the_random_stop_target_only(digits_cnn, digits_random, small_ood):
    cfg = build_config("scar", {"epochs": 1, "min_epochs": 0, "ood_size": 256, "stop_forget_acc": 0.0})
    log: set[str] = set()
    run("scar", digits_cnn, recording(digits_random, small_ood, log), dataclasses.asdict(cfg), device="cpu")
    assert log == {"forget", "retain", "ood"} == set(declared_reads("scar", cfg, digits_random.spec))
    cfg = build_config("scar", {"epochs": 1, "min_epochs": 0, "ood_size": 256})
    log.clear()
    run("scar", digits_cnn, recording(digits_random, small_ood, log), dataclasses.asdict(cfg), device="cpu")
    assert log == {"forget", "retain", "ood", "val"} == set(declared_reads("scar", cfg, digits_random.spec))


# ============================================================================ SalUn mask modes


def _decay_only_factor(steps: int, lr: float, wd: float, momentum: float) -> float:
    """What SGD does to a weight whose gradient is always zero: p ← p − lr·buf, buf ← μ·buf + wd·p
    (buf = wd·p on the first step). The weight is multiplied by the returned factor."""
    p, buf = 1.0, None
    for _ in range(steps):
        d = wd * p
        buf = d if buf is None else momentum * buf + d
        p -= lr * buf
    return p


@pytest.mark.parametrize("mode", ["exact", "gradient"])
def test_gradient_mask_lets_weight_decay_move_frozen_weights_and_exact_does_not(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    mask = {n: torch.rand(p.shape) < 0.5 for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, "sgd", lr=0.1, momentum=0.9, weight_decay=0.05)
    stepper = Stepper(model, opt, **({"mask": mask} if mode == "exact" else {"grad_mask": mask}))
    for _ in range(7):
        x = torch.randn(16, 6)
        stepper.step(nn.functional.cross_entropy(model(x), torch.randint(0, 3, (16,))))
    c = _decay_only_factor(7, 0.1, 0.05, 0.9)
    for n, p in model.named_parameters():
        frozen = ~mask[n]
        if mode == "exact":
            assert torch.equal(p[frozen], before[n][frozen])
        else:  # zero gradient, yet weight decay and momentum shrink every frozen weight by the same factor
            torch.testing.assert_close(p[frozen], before[n][frozen] * c)
        assert not torch.equal(p[mask[n]], before[n][mask[n]])  # the salient ones trained in both modes
    assert c < 0.9  # a visible shrink, not a rounding effect


def test_salun_gradient_mode_shrinks_non_salient_weights_by_decay_only(digits_cnn, digits_class3):
    cfg = {"epochs": 1, "mask_ratio": 0.3, "weight_decay": 5e-3, "momentum": 0.9, "lr": 0.05, "batch_size": 64,
           "mask_mode": "gradient"}
    out = run("salun", digits_cnn, digits_class3, cfg, seed=4, device="cpu")
    mask = saliency_mask(copy.deepcopy(digits_cnn), digits_class3.forget, 0.3, batch_size=256,
                         generator=torch.Generator().manual_seed(4 + 1))
    steps = -(-len(digits_class3.forget) // 64) + -(-len(digits_class3.retain) // 64)
    c = _decay_only_factor(steps, 0.05, 5e-3, 0.9)
    assert c < 0.99  # a shrink the tolerance below can see
    before, after = dict(digits_cnn.named_parameters()), dict(out.model.named_parameters())
    for n, m in mask.items():
        torch.testing.assert_close(after[n][~m], before[n][~m] * c, rtol=1e-4, atol=1e-7)
    # exact mode on the same run leaves them bit-identical
    out = run("salun", digits_cnn, digits_class3, {**cfg, "mask_mode": "exact"}, seed=4, device="cpu")
    after = dict(out.model.named_parameters())
    assert all(torch.equal(after[n][~m], before[n][~m]) for n, m in mask.items())


def test_salun_gradient_mode_still_keeps_pruned_weights_at_zero(digits_cnn, digits_class3):
    out = run("salun", digits_cnn, digits_class3, {"epochs": 1, "mask_mode": "gradient", "mixed": True},
              prune=0.5, device="cpu")  # run() raises if a pruned weight moved
    assert out.info["pruned_sparsity"] == pytest.approx(0.5, abs=1e-3)


# ============================================================================ paper presets


def test_paper_presets_follow_the_paper_code():
    for name in PRESETS.names():
        p = PRESETS.get(name)
        fields = {f.name for f in dataclasses.fields(METHODS.info(p.method)["config"])}
        if p.dataset != "digits" and "amp" in fields:
            assert p.config.get("amp") is False, f"{name}: the reference trains in fp32"
    table1 = PRESETS.get("salun-cifar10-random10")
    assert table1.config["mixed"] is True and table1.config["mask_mode"] == "gradient"
    text = (PRESET_DIR / "salun-cifar10-random10.yaml").read_text()
    assert "PR #33" in text and "f31f82e" in text  # it says why
    bs = PRESETS.get("boundary-shrink-cifar10-random10")
    assert bs.method == "boundary_shrink" and bs.config["bound"] == 0.1 and bs.config["lr"] == 1e-6
    assert "main_0.1_cifar10.sh" in (PRESET_DIR / "boundary-shrink-cifar10-random10.yaml").read_text()
    l1 = (PRESET_DIR / "l1sparse-cifar10-class.yaml").read_text()
    assert "a5dd98c" in l1 and "{1e-5, 3e-5, 1e-4, 3e-4, 1e-3}" in l1
    from_dict(METHODS.info("salun")["config"], table1.config)


def test_every_paper_preset_follows_one_named_release():
    """Issue #23: no preset mixes releases. Each names owner/repo@commit (date); the SalUn presets
    pin the settings of their release."""
    from unlearnbench.unlearn.presets import RELEASE

    for name in PRESETS.names():
        p = PRESETS.get(name)
        if p.dataset in ("digits", "synthetic"):
            continue
        assert RELEASE.match(p.release), f"{name}: no release"
    table = {n: PRESETS.get(n) for n in ("salun-cifar10-random10", "salun-cifar10-class",
                                           "salun-cifar10-random10-current", "salun-cifar10-class-current")}
    for name in ("salun-cifar10-random10", "salun-cifar10-class"):  # 9576623: the tables' release
        c = table[name].config
        assert table[name].release.startswith("OPTML-Group/Unlearn-Saliency@9576623")
        assert (c["lr"], c["epochs"], c["mixed"], c["mask_mode"], c["mask_generation"], c["mask_lr"]) == (
            0.1, 10, True, "gradient", "2023", 0.01), name
    for name in ("salun-cifar10-random10-current", "salun-cifar10-class-current"):  # a6e89fd: today's code
        c = table[name].config
        assert table[name].release.startswith("OPTML-Group/Unlearn-Saliency@a6e89fd")
        assert (c["lr"], c["epochs"], c["mixed"], c["mask_mode"], c["mask_generation"]) == (
            0.013, 10, False, "exact", "current"), name
    jan = PRESETS.get("l1sparse-cifar10-class-2023-01")
    assert jan.release.startswith("OPTML-Group/Unlearn-Sparse@a5dd98c")
    assert (jan.config["alpha"], jan.config["epochs"], jan.config["lr"], jan.config["alpha_schedule"]) == (
        1e-4, 10, 0.01, "constant")


def test_a_preset_without_release_or_with_a_bad_one_is_refused(tmp_path):
    from unlearnbench.unlearn.presets import load_preset

    base = "method: finetune\ndataset: cifar10\nforget: class:0\nconfig: {epochs: 1}\n"
    (tmp_path / "a.yaml").write_text(base)
    with pytest.raises(ValueError, match="must name the release"):
        load_preset(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text(base + "release: someone/repo@HEAD\n")
    with pytest.raises(ValueError, match="owner/repo@commit"):
        load_preset(tmp_path / "b.yaml")
    (tmp_path / "c.yaml").write_text(base.replace("cifar10", "digits"))
    assert load_preset(tmp_path / "c.yaml").release == ""


def test_balanced_ood_weights_on_hand_pseudo_labels():
    from unlearnbench.unlearn.scar import balanced_ood_weights

    pseudo = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
    w = balanced_ood_weights(pseudo, 4)  # counts 4, 3, 1 (< 3: counted as 5), 0
    torch.testing.assert_close(w, torch.tensor([1 / 4] * 4 + [1 / 3] * 3 + [1 / 5]))


def test_balanced_ood_stream_draws_pseudo_classes_equally():
    from unlearnbench.unlearn.scar import OODStream, balanced_ood_weights

    pseudo = torch.tensor([0] * 270 + [1] * 30)
    x = torch.zeros(300, 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = pseudo.to(torch.uint8) * 255  # class-1 images are marked
    stream = OODStream(TensorSet(x, pseudo, torch.arange(300)), 100, None, torch.Generator().manual_seed(0),
                       balanced_ood_weights(pseudo, 2))
    batches = [stream.next() for _ in range(30)]  # ten passes of 300 draws
    share = torch.cat([b[:, 0, 0, 0] for b in batches]).mean().item()
    assert share == pytest.approx(0.5, abs=0.03)  # 3,000 draws: sd 0.009; unbalanced it would be 0.1
    plain = OODStream(TensorSet(x, pseudo, torch.arange(300)), 100, None, torch.Generator().manual_seed(0))
    assert torch.cat([plain.next()[:, 0, 0, 0] for _ in range(3)]).mean().item() == pytest.approx(0.1)


@pytest.mark.parametrize("fixture", ["digits_class3", "digits_random"])
def test_scar_balances_ood_images_for_random_forgetting_only(monkeypatch, request, fixture, digits_cnn, small_ood):
    from unlearnbench.unlearn.scar import balanced_ood_weights, predictions

    seen = []
    original = scar_mod.OODStream
    monkeypatch.setattr(scar_mod, "OODStream", lambda *a: seen.append(a[4]) or original(*a))
    cfg = {"epochs": 1, "min_epochs": 0, "ood_size": 256, "steps_per_forget_batch": 1, "stop_forget_acc": 0.0}
    run("scar", digits_cnn, _scar_data(request.getfixturevalue(fixture), small_ood), cfg, device="cpu")
    if fixture == "digits_class3":
        assert seen == [None]
    else:
        torch.testing.assert_close(seen[0], balanced_ood_weights(predictions(digits_cnn, small_ood), 10))


@pytest.mark.parametrize("fixture", ["digits_class3", "digits_random"])
def test_scar_checks_the_stop_rule_after_every_step(monkeypatch, request, fixture, digits_cnn, small_ood):
    calls = []
    original = scar_mod.forget_term
    monkeypatch.setattr(scar_mod, "forget_term", lambda *a, **k: calls.append(a) or original(*a, **k))
    monkeypatch.setattr(scar_mod, "stop_target", lambda *a: 1000.0)  # no model stays above: the first check stops
    cfg = {"epochs": 3, "min_epochs": 1, "ood_size": 256}
    run("scar", digits_cnn, _scar_data(request.getfixturevalue(fixture), small_ood), cfg, device="cpu")
    assert len(calls) == 6 + 1  # epoch 1 unchecked (min_epochs), then one step of epoch 2


# ============================================================================ SCAR, reproduction switches (issue #23)


def test_scar_stop_on_test_is_the_release_rule_and_declares_the_test_set(digits_cnn, digits_random, digits_class3):
    """Default: the original's validation accuracy - 1.5; ``stop_on: test``: its test accuracy - 1.5
    (SCAR src/main.py, HR), and SCAR then declares the test set and warns."""
    val_acc, test_acc = accuracy(digits_cnn, digits_random.val), accuracy(digits_cnn, digits_random.test)
    assert val_acc != test_acc  # otherwise the two rules could not be told apart
    default = build_config("scar")
    assert stop_target(default, digits_random, digits_cnn) == pytest.approx(val_acc - 1.5)
    repro = build_config("scar", {"stop_on": "test"})
    with pytest.warns(UserWarning, match="TEST accuracy"):
        assert stop_target(repro, digits_random, digits_cnn) == pytest.approx(test_acc - 1.5)
    assert "test" in declared_reads("scar", repro, digits_random.spec)
    assert "test" not in declared_reads("scar", default, digits_random.spec)
    # class-wise forgetting stops at 1 % either way and never reads the test set
    assert "test" not in declared_reads("scar", repro, digits_class3.spec)
    assert stop_target(repro, digits_class3, digits_cnn) == 1.0


def test_scar_stop_on_test_runs_through_the_guard(digits_cnn, digits_random, small_ood):
    cfg = {**RANDOM_CFG, "epochs": 1, "stop_on": "test"}
    with pytest.warns(UserWarning, match="TEST accuracy"):
        out = run("scar", digits_cnn, _scar_data(digits_random, small_ood), cfg, device="cpu")
    assert "test" in out.info["reads"]


@pytest.mark.parametrize("method", sorted(METHODS.names()))
def test_no_method_reads_the_test_set_by_default(method, digits_class3, digits_random):
    for data in (digits_class3, digits_random):
        assert "test" not in declared_reads(method, build_config(method), data.spec)


def test_scar_nearest_class_quirk_compares_list_positions_with_labels():
    from unlearnbench.unlearn.classstats import ClassGaussians, nearest_wrong_class

    # class-wise forgetting of class 0: the Gaussians are those of classes 1, 2, 3 (positions 0, 1, 2)
    g = ClassGaussians(torch.tensor([1, 2, 3]), torch.zeros(3, 1), torch.zeros(3, 1, 1))
    d = torch.tensor([[0.1, 0.5, 0.9],   # nearest: class 1 at position 0
                      [0.6, 0.2, 0.9],   # nearest: class 2 at position 1
                      [0.3, 0.9, 0.2]])  # nearest: class 3 at position 2
    y = torch.zeros(3, dtype=torch.long)
    assert g.classes[nearest_wrong_class(d, g, y)].tolist() == [1, 2, 3]
    # the release: position 0 == label 0, so class 1 is skipped for the 2nd nearest (class 2)
    assert g.classes[nearest_wrong_class(d, g, y, by_position=True)].tolist() == [2, 2, 3]
    # random forgetting: the list is every class, and both rules agree
    g_all = ClassGaussians(torch.arange(4), torch.zeros(4, 1), torch.zeros(4, 1, 1))
    gen = torch.Generator().manual_seed(0)
    dd, yy = torch.rand(50, 4, generator=gen), torch.randint(0, 4, (50,), generator=gen)
    assert torch.equal(nearest_wrong_class(dd, g_all, yy), nearest_wrong_class(dd, g_all, yy, by_position=True))


def test_scar_nearest_class_quirk_reaches_the_targets(monkeypatch, digits_cnn, digits_class3, small_ood):
    import unlearnbench.unlearn.classstats as cs

    seen = []
    real = cs.nearest_wrong_class
    monkeypatch.setattr(scar_mod, "nearest_wrong_class", lambda *a, **k: (seen.append(k.get("by_position")), real(*a, **k))[1])
    cfg = {"epochs": 1, "min_epochs": 0, "ood_size": 256, "ood_batch_size": 64, "steps_per_forget_batch": 1}
    run("scar", digits_cnn, _scar_data(digits_class3, small_ood), {**cfg, "nearest_class_quirk": True}, device="cpu")
    run("scar", digits_cnn, _scar_data(digits_class3, small_ood), cfg, device="cpu")
    assert seen == [True, False]


# ============================================================================ SCAR config bounds (mutation run)

_SCAR_EDGES = [  # (key, accepted values at the edges of the valid range, rejected values just outside)
    ("ood_batch_size", (1,), (0,)), ("ood_size", (1,), (0,)),
    ("lambda_1", (0.0,), (-0.1,)), ("lambda_2", (0.0,), (-0.1,)),
    ("temperature", (1e-3,), (0.0, -1.0)), ("delta", (1e-3, 1.0), (0.0, 1.01)),
    ("gamma1", (0.0,), (-0.1,)), ("gamma2", (0.0,), (-0.1,)),
    ("stop_forget_acc", (None, 0.0, 100.0), (-0.1, 100.1)), ("min_epochs", (0,), (-1,)),
    ("stop_margin", (None, 0.0, 100.0), (-0.1, 100.1)), ("weight_threshold", (0.0, 1.0), (-0.01, 1.01)),
]


@pytest.mark.parametrize("method", ["scar", "scar_self"])
def test_scar_config_takes_its_range_edges_and_rejects_what_lies_outside(method):
    from unlearnbench.core.errors import ConfigError

    fields = {f.name for f in dataclasses.fields(METHODS.info(method)["config"])}
    for key, ok, bad in _SCAR_EDGES:
        if key not in fields:
            continue
        for v in ok:
            assert getattr(build_config(method, {key: v}), key) == v
        for v in bad:
            with pytest.raises(ConfigError, match=key.split("_")[0] if key != "ood_size" else "ood_size"):
                build_config(method, {key: v})
    if method == "scar_self":
        for v in (0.0, 100.0):
            assert build_config(method, {"stop_proxy_acc": v}).stop_proxy_acc == v
        for v in (-0.1, 100.1):
            with pytest.raises(ConfigError, match="stop_proxy_acc"):
                build_config(method, {"stop_proxy_acc": v})


def test_a_preset_file_is_read_field_by_field_and_every_bad_field_is_refused(tmp_path):
    from unlearnbench.core.errors import ConfigError, DataError
    from unlearnbench.unlearn.presets import load_preset

    def write(name, text):
        (tmp_path / f"{name}.yaml").write_text(text)
        return tmp_path / f"{name}.yaml"

    full = ("summary: one line\nrelease: o-w.n/re_po.x@abcdef0 (2024-02-03)\nquirks: [q one, q two]\nmethod: l1_sparse\n"
            "dataset: cifar10\nmodel: resnet18\nforget: random:0.1\nprune: 1\nconfig: {alpha: 0.0001}\n")
    p = load_preset(write("my-preset", full))
    assert (p.name, p.method, p.dataset, p.forget, p.summary, p.model) == (
        "my-preset", "l1_sparse", "cifar10", "random:0.1", "one line", "resnet18")
    assert p.prune == 1.0 and isinstance(p.prune, float) and p.config == {"alpha": 0.0001}
    assert p.release == "o-w.n/re_po.x@abcdef0 (2024-02-03)" and p.quirks == ("q one", "q two")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.config = {}  # a loaded preset cannot be changed in place
    bare = load_preset(write("bare", "method: finetune\ndataset: synthetic\nforget: class:1\n"))
    assert (bare.summary, bare.model, bare.prune, bare.config, bare.release, bare.quirks) == ("", None, None, {}, "", ())
    assert load_preset(write("forty", full.replace("abcdef0", "a" * 40))).release.startswith("o-w.n/re_po.x@" + "a" * 40)
    for bad_release in ("abcdef", "a" * 41, "ABCDEF0", "abcdef0 (2024-2-03)", "abcdef0 2024-02-03", "abcdef0 (2024-02-03) x"):
        with pytest.raises(ValueError, match="is not 'owner/repo@commit"):
            load_preset(write("r", full.replace("abcdef0 (2024-02-03)", bad_release)))
    with pytest.raises(ValueError, match=r"unknown keys \['speed'\], missing keys \[\]"):
        load_preset(write("u", full + "speed: 3\n"))
    with pytest.raises(ValueError, match=r"unknown keys \[\], missing keys \['dataset', 'forget'\]"):
        load_preset(write("m", "method: finetune\n"))
    with pytest.raises(ValueError, match="quirks must be a list"):
        load_preset(write("q", full.replace("[q one, q two]", "just one")))
    with pytest.raises(ValueError, match="quirks must be a list"):
        load_preset(write("q2", full.replace("[q one, q two]", "[q one, 2]")))
    with pytest.raises(ConfigError):
        load_preset(write("k", full.replace("alpha", "alpah")))  # a typo in a config key
    with pytest.raises(DataError, match="Bad forget spec"):
        load_preset(write("f", full.replace("random:0.1", "everything")))
    entry = PRESETS.entry("salun-digits-class")
    assert entry.info["release"] == "-" and entry.info["method"] == "salun" and entry.info["dataset"] == "digits"
    assert PRESETS.info("salun-cifar10-class")["release"] == PRESETS.get("salun-cifar10-class").release
    assert PRESETS.info("salun-cifar10-class")["forget"] == "class:0" and PRESETS.info("salun-cifar10-class")["summary"]


# ============================================================================ SCAR helpers on hand-built models


class _BNNet(nn.Module):
    """Flatten → Linear(4, 3) → BatchNorm → ReLU → head Linear(3, 3): features are the head's input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
        self.head = nn.Linear(3, 3)

    def forward(self, x):
        return self.head(self.body(x))


def _hand_set(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorSet(torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=g), torch.arange(n) % 3,
                     torch.arange(n))


def test_scar_helpers_evaluate_in_eval_mode_and_restore_the_mode():
    from unlearnbench.unlearn.scar import freeze_batchnorm, predictions, transformed_features

    data = _hand_set()
    m = _BNNet()
    x = data.x.float() / 255
    with torch.no_grad():
        m.train()
        m(x * 3)  # move the running statistics away from the batch's own
        m.eval()
        want_logits = m(x)
        want_feats = m.body(x).clamp_min(1e-6).pow(0.5)
    for mode in (True, False):
        m.train(mode)
        stats = m.body[2].running_mean.clone()
        assert torch.equal(predictions(m, data, batch_size=3), want_logits.argmax(1)) and m.training is mode
        torch.testing.assert_close(transformed_features(m, data, 0.5, batch_size=4), want_feats)
        assert m.training is mode and torch.equal(m.body[2].running_mean, stats)  # eval mode: no statistics update
        per_class, overall = forget_accuracy_by_class(m, data, 3, batch_size=7)
        correct = want_logits.argmax(1) == data.y
        assert m.training is mode and overall == pytest.approx(100 * correct.float().mean().item())
        torch.testing.assert_close(per_class, torch.stack([correct[data.y == c].float().mean() for c in range(3)]))
    m.train()
    freeze_batchnorm(m)
    assert not m.body[2].training and m.body[1].training and m.head.training


def test_scar_kept_classes_retain_term_and_class_statistics_sources(digits_class3, digits_random):
    from unlearnbench.unlearn.scar import class_statistics, kept_classes, predictions, retain_term

    assert kept_classes(digits_class3) == [0, 1, 2, 4, 5, 6, 7, 8, 9] and kept_classes(digits_random) == list(range(10))
    m = _BNNet().eval()
    xs = torch.rand(4, 1, 2, 2)
    assert retain_term(m, xs, torch.tensor([[0.0, 5.0, 1.0]] * 4), (1,), 1.0) is None  # every row predicts class 1
    t = torch.tensor([[3.0, 0.0, 1.0], [0.0, 5.0, 1.0], [1.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
    got = retain_term(m, xs, t, (1,), 2.0)
    keep = torch.tensor([True, False, True, True])
    kept = t[keep].clone()
    kept[:, 1] = kept.min()
    from unlearnbench.unlearn.losses import kl_from_logits

    torch.testing.assert_close(got, kl_from_logits(m(xs[keep]), kept / 2.0))
    # the statistics' source: retain or val (true labels), or the OOD images labelled by the teacher
    ood = _hand_set(30, seed=1)
    data = dataclasses.replace(digits_random, retain=_hand_set(30, seed=2), val=_hand_set(30, seed=3),
                               extras={"ood": ood}, num_classes=3)
    for source, images, labels in (("retain", data.retain, data.retain.y), ("val", data.val, data.val.y),
                                   ("ood", ood, predictions(m, ood))):
        cfg = build_config("scar", {"stats_source": source, "delta": 0.5, "gamma1": 1.0, "gamma2": 2.0})
        g = class_statistics(cfg, data, m, [0, 1, 2])
        from unlearnbench.unlearn.classstats import class_gaussians
        from unlearnbench.unlearn.scar import transformed_features

        want = class_gaussians(transformed_features(m, images, 0.5), labels, [0, 1, 2], gamma1=1.0, gamma2=2.0)
        assert torch.equal(g.classes, want.classes) and torch.equal(g.means, want.means), source
        assert torch.equal(g.precisions, want.precisions), source


def test_scar_ood_stream_cycles_and_draws_by_weight():
    from unlearnbench.unlearn.scar import OODStream

    data = TensorSet(torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous(),
                     torch.zeros(5, dtype=torch.long), torch.arange(5))
    plain = OODStream(data, 2, None, torch.Generator().manual_seed(0))
    firsts = [plain.next() for _ in range(6)]  # 3 batches per pass (2, 2, 1), then a new shuffled pass
    assert [len(b) for b in firsts] == [2, 2, 1, 2, 2, 1]
    for p in (firsts[:3], firsts[3:]):
        assert sorted(torch.cat(p)[:, 0, 0, 0].mul(255).round().long().tolist()) == [0, 1, 2, 3, 4]
    weighted = OODStream(data, 5, None, torch.Generator().manual_seed(0), torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0]))
    for _ in range(3):
        b = weighted.next()
        assert len(b) == 5 and set(b[:, 0, 0, 0].mul(255).round().long().tolist()) <= {2, 4}  # len(data) draws


# ============================================================================ SCAR self-forget, step by step


def _self_forget_setup(digits_class3):
    """A small digits net whose teacher calls about half of 64 synthetic OOD images class 3 (the
    forgotten class), and the data with those OOD images and a 200-image retain set."""
    from unlearnbench.unlearn.ood import synthetic_images

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 10)).eval()
    ood = synthetic_images(64, 1, 8, seed=0)
    with torch.no_grad():
        logits = model(ood.x.float() / 255)
        margin = torch.cat([logits[:, :3], logits[:, 4:]], 1).max(1).values - logits[:, 3]
        model[4].bias[3] += margin.median() + 1e-4
    data = dataclasses.replace(digits_class3, retain=digits_class3.retain.select(torch.arange(200)),
                               extras={"ood": ood})
    return model, data, ood


def test_scar_self_loss_of_every_step_by_hand(monkeypatch, digits_class3):
    """With the optimizer step replaced by a recorder (the model stays the teacher), each step's
    loss is λ₁·mean d_M(z, q) over the batch's proxy images (teacher says class 3; q their nearest
    wrong class Gaussian) + λ₂·KL to the selective teacher on the other rows — batches in the
    order of the seeded shuffled loader, epochs × batches steps, BatchNorm frozen as configured."""
    import unlearnbench.unlearn.scar_self as ss
    from unlearnbench.core.data import Loader
    from unlearnbench.unlearn.classstats import mahalanobis, nearest_wrong_class, tukey
    from unlearnbench.unlearn.losses import kl_from_logits
    from unlearnbench.unlearn.scar import class_statistics, kept_classes, selective_teacher

    model, data, ood = _self_forget_setup(digits_class3)
    losses, bn_modes = [], []

    class Recorder:
        def __init__(self, m, opt, mask=None):
            self.steps = 0
            assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 2e-3
            assert opt.param_groups[0]["weight_decay"] == 0.01

        def step(self, loss):
            losses.append(float(loss.detach()))
            bn_modes.append(model[2].training)

    monkeypatch.setattr(ss, "Stepper", Recorder)
    cfg = build_config("scar_self", {"epochs": 2, "batch_size": 16, "lambda_1": 3.0, "lambda_2": 7.0, "lr": 2e-3,
                                     "weight_decay": 0.01, "augment": False, "freeze_bn": True}, seed=9)
    teacher = copy.deepcopy(model).eval()
    gauss = class_statistics(cfg, data, teacher, kept_classes(data))
    ss.scar_self(model, data, cfg)
    gen = torch.Generator().manual_seed(9)
    loader = Loader(ood, 16, shuffle=True, augment=None, generator=gen)
    want, proxies_seen = [], 0
    for _ in range(2):
        for xs, _ in loader:
            with torch.no_grad():
                t = teacher(xs)
                proxy = t.argmax(1) == 3
                proxies_seen += int(proxy.sum())
                loss = torch.zeros(())
                if proxy.any():
                    d = mahalanobis(tukey(_features(teacher, xs[proxy]), 0.5), gauss)
                    q = nearest_wrong_class(d, gauss, t[proxy].argmax(1))
                    loss = loss + 3.0 * d.gather(1, q[:, None]).mean()
                keep, tk = selective_teacher(t, (3,))
                if len(tk):
                    loss = loss + 7.0 * kl_from_logits(teacher(xs[keep]), tk)
            want.append(float(loss))
    assert 0 < proxies_seen < 2 * 64  # both terms are exercised
    assert losses == pytest.approx(want, rel=1e-4, abs=1e-6) and len(losses) == 2 * 4
    assert bn_modes == [False] * 8 and not model.training


def _features(model, x):
    from unlearnbench.core.models import penultimate_features

    return penultimate_features(model, x)


def test_scar_self_stops_once_few_proxies_remain_and_refuses_random_forgetting(monkeypatch, digits_class3, digits_random):
    import unlearnbench.unlearn.scar_self as ss
    from unlearnbench.core.errors import ConfigError

    model, data, _ = _self_forget_setup(digits_class3)
    steps = []

    late = []

    class Forgetter:  # a step makes the model call nothing class 3 any more (from step late[0] on, if set)
        def __init__(self, m, opt, mask=None):
            self.m = m

        def step(self, loss):
            steps.append(1)
            if len(steps) >= (late[0] if late else 1):
                with torch.no_grad():
                    self.m[4].bias[3] = -1e4

    monkeypatch.setattr(ss, "Stepper", Forgetter)
    base = {"epochs": 3, "batch_size": 32, "augment": False}
    ss.scar_self(copy.deepcopy(model), data, build_config("scar_self", {**base, "stop_proxy_acc": 50.0, "min_epochs": 2}))
    assert len(steps) == 2 * 2  # stops after epoch 2 (min_epochs), not after epoch 1
    steps.clear()
    ss.scar_self(copy.deepcopy(model), data, build_config("scar_self", {**base, "stop_proxy_acc": 0.0, "min_epochs": 1}))
    assert len(steps) == 3 * 2  # 0 % left is not below 0 %: no stop
    steps.clear()
    ss.scar_self(copy.deepcopy(model), data, build_config("scar_self", base))
    assert len(steps) == 3 * 2  # no stop rule by default
    steps.clear()
    late.append(3)  # the proxies go in epoch 2: checked after every epoch from min_epochs on, not only then
    ss.scar_self(copy.deepcopy(model), data, build_config("scar_self", {**base, "stop_proxy_acc": 50.0, "min_epochs": 1}))
    assert len(steps) == 2 * 2
    with pytest.raises(ConfigError, match="class-wise"):
        ss.scar_self(model, dataclasses.replace(digits_random, extras=data.extras), build_config("scar_self", base))


def test_scar_balanced_ood_weights_count_below_three_as_five_and_forget_accuracy_is_not_rounded():
    from unlearnbench.unlearn.scar import balanced_ood_weights

    w = balanced_ood_weights(torch.tensor([0, 0, 1, 1, 1, 2]), 3)  # counts 2 (< 3: as 5), 3 (kept), 1 (as 5)
    torch.testing.assert_close(w, torch.tensor([1 / 5] * 2 + [1 / 3] * 3 + [1 / 5]))
    y = torch.tensor([1, 1, 0])  # the constant model predicts 1: 2 of 3 right
    _, overall = forget_accuracy_by_class(_Constant(), TensorSet(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), y,
                                                                 torch.arange(3)), 3)
    assert overall == pytest.approx(200 / 3)
