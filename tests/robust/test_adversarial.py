"""Adversarial training and the in-loop adversarial-example generators."""

from __future__ import annotations

import copy

import pytest
import torch

import unlearnbench.robust.train as rt
from unlearnbench.core.config import from_dict
from unlearnbench.core.errors import ConfigError, UnknownNameError
from unlearnbench.core.models import create_model
from unlearnbench.core.train import TrainConfig
from unlearnbench.robust.adversarial import retain_attack
from unlearnbench.robust.evaluate import robust_accuracy
from unlearnbench.robust.threat import ThreatModel

THREAT = ThreatModel("Linf", 0.1)


def _fresh_cnn(info):
    torch.manual_seed(0)  # create_model draws its initial weights from the global generator
    return create_model("cnn", info.num_classes, info.in_channels, info.image_size, info.mean, info.std)


def test_pgd_at_raises_robust_accuracy_well_above_standard_training(digits_splits, digits_cnn):
    info = digits_splits.info
    model = _fresh_cnn(info)
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.05, seed=0, device="cpu")
    result, at = rt.adversarial_fit(model, digits_splits.train, digits_splits.val, info, cfg,
                                    {"method": "pgd_at", "eps": 0.1, "steps": 5})
    assert [h["at_method"] for h in result.history] == ["pgd_at"] * 4
    assert all("holdout_pgd_acc" in h for h in result.history)
    assert at.summary()["selection"] == "best held-out PGD accuracy"
    test = digits_splits.test
    standard = robust_accuracy(digits_cnn, test, "pgd", THREAT, config={"steps": 10})
    robust = robust_accuracy(model, test, "pgd", THREAT, config={"steps": 10})
    assert robust.clean_acc > 85
    assert robust.robust_acc > standard.robust_acc + 20, (standard.robust_acc, robust.robust_acc)


@pytest.mark.parametrize("method", ["trades", "mart", "fast_at", "nfgsm", "gradalign"])
def test_every_method_trains_one_step_and_leaves_rng_alone(digits_splits, method):
    info = digits_splits.info
    model = _fresh_cnn(info).train()
    at = rt.make_adversarial_training({"method": method, "eps": 0.1, "steps": 2})
    x = digits_splits.train.x[:16].float() / 255
    y = digits_splits.train.y[:16]
    rng = torch.get_rng_state()
    loss = at.loss_fn(model, x, y)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_catastrophic_overfitting_detector():
    det = rt.CODetector(drop=20)
    assert [det.update(a) for a in (30, 45, 44, 40)] == [False] * 4
    assert det.update(20) is True  # 25 points below the best (45)
    assert rt.CODetector(drop=20).update(0) is False  # the first check has nothing to compare with


@pytest.mark.parametrize("remedy", ["stop", "nfgsm"])
def test_fast_at_stops_or_switches_on_collapse(digits_splits, monkeypatch, remedy):
    """Held-out PGD accuracy 40 → 55 → 5 (FGSM still 60): CO at epoch 3."""
    pgd_seq = iter([40.0, 55.0, 5.0, 50.0])
    monkeypatch.setattr(rt, "holdout_accuracy", lambda *a, **k: (60.0, next(pgd_seq)))
    info = digits_splits.info
    model = _fresh_cnn(info)
    at = rt.make_adversarial_training({"method": "fast_at", "eps": 0.1, "co_remedy": remedy}, digits_splits.val, epochs=10)
    snapshots = []
    for epoch in (1, 2, 3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * epoch)
        snapshots.append(copy.deepcopy(model.state_dict()))
        record: dict = {}
        stop = at.epoch_end(epoch, record, model)
    assert record["co_detected"] == 1.0 and at.events[0]["epoch"] == 3
    assert at.best_epoch == 2
    for k, v in snapshots[1].items():  # rolled back to the most robust weights (epoch 2)
        assert torch.equal(model.state_dict()[k], v)
    if remedy == "stop":
        assert stop is True and at.method == "fast_at"
    else:
        assert stop is False and at.method == "nfgsm" and at.summary()["final_method"] == "nfgsm"


def test_fast_at_runs_its_check_inside_fit(digits_splits):
    info = digits_splits.info
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, seed=0, device="cpu")
    result, at = rt.adversarial_fit(_fresh_cnn(info), digits_splits.train, digits_splits.val, info, cfg,
                                    {"method": "fast_at", "eps": 0.1, "check_size": 64})
    assert [h["co_detected"] for h in result.history] == [0.0, 0.0]
    assert 0 <= result.history[-1]["holdout_pgd_acc"] <= result.history[-1]["holdout_fgsm_acc"] + 10


def test_adversarial_config_errors():
    with pytest.raises(UnknownNameError, match="pgd_at"):
        from_dict(rt.AdvTrainConfig, {"method": "pgd-at"})
    with pytest.raises(ConfigError, match="beta"):
        from_dict(rt.AdvTrainConfig, {"betta": 6})
    with pytest.raises(ConfigError):
        from_dict(rt.AdvTrainConfig, {"co_remedy": "pray"})


@pytest.mark.parametrize("name", ["pgd", "fgsm", "apgd"])
def test_retain_attack_contract(cnn, digits_points, name):
    x, y = digits_points[0][:16], digits_points[1][:16]
    cnn.train()
    for p in cnn.parameters():
        p.grad = None
    rng = torch.get_rng_state()
    gen_a, gen_b = retain_attack(name, THREAT, steps=3, seed=1), retain_attack(name, THREAT, steps=3, seed=1)
    a1, a2 = gen_a(cnn, x, y), gen_a(cnn, x, y)
    b1 = gen_b(cnn, x, y)
    assert cnn.training and all(p.grad is None for p in cnn.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    cnn.eval()
    assert torch.equal(a1, b1)  # same seed, same stream
    if name != "apgd":
        assert not torch.equal(a1, a2)  # the stream advances between calls (fresh random starts)
    assert (a1 - x).abs().max() <= 0.1 + 1e-6 and a1.min() >= 0 and a1.max() <= 1
    with torch.no_grad():
        assert (cnn(a1).argmax(1) == y).float().mean() < (cnn(x).argmax(1) == y).float().mean()


def test_retain_attack_rejects_unknown_names():
    with pytest.raises(UnknownNameError, match="Valid names"):
        retain_attack("pdg", THREAT)
