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


def test_catastrophic_overfitting_detectors():
    wong = rt.WongCODetector(drop=20)  # Wong et al.: against the previous epoch
    assert [wong.update(a) for a in (50, 34, 20)] == [False, False, False]  # two 14-16 point steps
    wong = rt.WongCODetector(drop=20)
    assert [wong.update(a) for a in (50, 60, 38)] == [False, False, True]
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
    at = rt.make_adversarial_training({"method": "fast_at", "eps": 0.1, "co_remedy": remedy, "co_check": "holdout"},
                                      digits_splits.val, epochs=10)
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


def _bn_cnn(info):
    model = _fresh_cnn(info).train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns, "the test needs a BatchNorm model"
    return model, bns[0]


@pytest.mark.parametrize("method,generate_in_eval,forwards,mode", [
    ("pgd_at", None, 3 + 1, "train"),  # Madry/Rice code: the 3 attack steps in train mode, then the training pass
    ("fast_at", None, 1 + 1, "train"),  # Wong et al.: the FGSM step in train mode
    ("pgd_at", True, 1, "eval"),  # the option: generate in eval mode, only the training pass updates BN
    ("trades", None, 2, "eval"),  # TRADES code: model.eval() while generating; then f(x) and f(x') in train mode
    ("mart", None, 2, "eval"),
])
def test_examples_are_generated_in_the_reference_codes_mode(digits_splits, method, generate_in_eval, forwards, mode):
    """Counted on a BatchNorm model: every train-mode forward pass updates the running statistics."""
    model, bn = _bn_cnn(digits_splits.info)
    at = rt.make_adversarial_training({"method": method, "eps": 0.1, "steps": 3, "generate_in_eval": generate_in_eval})
    x, y = digits_splits.train.x[:16].float() / 255, digits_splits.train.y[:16]
    before = int(bn.num_batches_tracked)
    at.loss_fn(model, x, y)
    assert int(bn.num_batches_tracked) - before == forwards
    assert model.training
    assert at.summary()["generated_in"] == mode


def test_inner_attack_runs_in_fp32_under_bf16_autocast(digits_splits):
    model, _ = _bn_cnn(digits_splits.info)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    dtypes = []
    last.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    at = rt.make_adversarial_training({"method": "pgd_at", "eps": 0.1, "steps": 2})
    x, y = digits_splits.train.x[:8].float() / 255, digits_splits.train.y[:8]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        at.loss_fn(model, x, y)
    assert dtypes == [torch.float32, torch.float32, torch.bfloat16]  # 2 attack steps, then the training pass


def test_mart_starts_from_x_plus_small_gaussian_noise(digits_splits, monkeypatch):
    seen = {}
    real = rt.pgd_perturb

    def spy(model, x, y, threat, **kw):
        seen.update(kw, x=x)
        return real(model, x, y, threat, **kw)

    monkeypatch.setattr(rt, "pgd_perturb", spy)
    model, _ = _bn_cnn(digits_splits.info)
    at = rt.make_adversarial_training({"method": "mart", "eps": 0.1, "steps": 2})
    x, y = digits_splits.train.x[:16].float() / 255, digits_splits.train.y[:16]
    at.loss_fn(model, x, y)
    assert seen["noise"] is None  # not a uniform point of the ball
    start = seen["start"].detach()
    inner = (x > 0.01) & (x < 0.99)  # away from the [0, 1] clamp
    assert 0.0005 < float(start[inner].std()) < 0.0015  # 0.001·N(0, I)


def test_gradalign_does_not_backpropagate_through_the_clean_gradient(digits_splits, monkeypatch):
    flags = []
    real = torch.autograd.grad

    def spy(*args, **kwargs):
        flags.append(bool(kwargs.get("create_graph", False)))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    model, _ = _bn_cnn(digits_splits.info)
    at = rt.make_adversarial_training({"method": "gradalign", "eps": 0.1})
    x, y = digits_splits.train.x[:16].float() / 255, digits_splits.train.y[:16]
    loss = at.loss_fn(model, x, y)
    # FGSM step, gradient at x (reference: backprop=False), gradient at x + eta (backprop=True)
    assert flags == [False, False, True]
    loss.backward()


def test_wong_co_check_uses_the_epochs_first_training_batch(digits_splits, monkeypatch):
    """Wong et al.: PGD on the epoch's first training batch, compared with the previous epoch;
    on a collapse, back to the previous epoch's weights."""
    seen, accs = [], iter([50.0, 60.0, 38.0])
    monkeypatch.setattr(rt, "training_batch_pgd_accuracy",
                        lambda model, x, y, threat, seed: seen.append(x[0, 0, 0, 0].item()) or next(accs))
    model, _ = _bn_cnn(digits_splits.info)
    at = rt.make_adversarial_training({"method": "fast_at", "eps": 0.1}, None, epochs=10)
    x = digits_splits.train.x[:8].float() / 255
    y = digits_splits.train.y[:8]
    states = []
    for epoch in (1, 2, 3):
        for k in range(2):  # two batches per epoch; only the first is checked
            batch = x.clone()
            batch[:, 0, 0, 0] = epoch + k / 10
            at.loss_fn(model, batch, y)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        states.append(copy.deepcopy(model.state_dict()))
        record: dict = {}
        stop = at.epoch_end(epoch, record, model)
    assert seen == [1.0, 2.0, 3.0]
    assert stop is True and at.events[0]["check"] == "wong" and record["co_check_pgd_acc"] == 38.0
    for k, v in states[1].items():  # the previous epoch's weights
        assert torch.equal(model.state_dict()[k], v)


def test_adv_retain_apgd_returns_its_highest_loss_point_for_every_point(cnn, digits_points):
    """AutoAttack's APGD hands back the clean image for every point it fails to break; a retain
    batch needs the strongest example for every point, so unbroken points must have a higher loss
    than their clean image."""
    x, y = digits_points[0][:48], digits_points[1][:48]
    threat = ThreatModel("Linf", 0.05)
    x_adv = retain_attack("apgd", threat, steps=10, seed=0)(cnn, x, y)
    with torch.no_grad():
        loss_clean = torch.nn.functional.cross_entropy(cnn(x), y, reduction="none")
        logits_adv = cnn(x_adv)
        loss_adv = torch.nn.functional.cross_entropy(logits_adv, y, reduction="none")
    unbroken = logits_adv.argmax(1) == y
    assert unbroken.sum() >= 10, "pick an eps that leaves points unbroken"
    assert (loss_adv[unbroken] > loss_clean[unbroken]).all()
    assert ((x_adv - x).abs().flatten(1).max(1)[0] <= 0.05 + 1e-6).all()


@pytest.mark.parametrize("name,why", [("autoattack", "an ensemble"), ("autoattack-fast", "an ensemble"),
                                      ("cw", "a minimum-norm attack"), ("fab", "a minimum-norm attack"),
                                      ("square", "an attack that returns")])
def test_adv_retain_refuses_attacks_that_return_clean_images(name, why, digits_class3):
    from unlearnbench import unlearn

    with pytest.raises(ConfigError, match=f"refused: it is {why}.*use pgd, fgsm, apgd"):
        retain_attack(name, THREAT)
    with pytest.raises(ConfigError, match="refused"):  # before any unlearning work
        unlearn.check_adv_retain("finetune", unlearn.build_config("finetune", {}, 0), name)
