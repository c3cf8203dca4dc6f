"""Contract suite over every registered attack: eps-ball and [0, 1], modes, RNG, determinism."""

from __future__ import annotations

import warnings

import pytest
import torch

from unlearnbench.core.errors import ConfigError, UnknownNameError
from unlearnbench.robust.attacks import ATTACKS, run_attack
from unlearnbench.robust.checks import AttackInputError, RobustnessWarning
from unlearnbench.robust.threat import ThreatModel

# Budgets small enough for a test, large enough that every attack does real work.
REDUCED = {
    "fgsm": {},
    "pgd": {"steps": 3},
    "pgdl2": {"steps": 3},
    "cw": {"steps": 5, "lr": 0.05},
    "deepfool": {"steps": 3},
    "apgd": {"steps": 5},
    "apgdt": {"steps": 5, "n_target_classes": 2},
    "fab": {"steps": 5, "n_target_classes": 2},
    "square": {"n_queries": 30},
    "autoattack": {"apgd_steps": 5, "fab_steps": 5, "square_queries": 30, "n_target_classes": 2},
    "autoattack-rand": {"apgd_steps": 3, "eot_iter": 2},
    "autoattack-fast": {},
}
EPS = {"Linf": 0.1, "L2": 1.0}
CASES = [(name, norm) for name in ATTACKS.names() for norm in ATTACKS.info(name)["norms"]
         if norm == ATTACKS.info(name)["norms"][0] or name in ("apgd", "square", "autoattack")]


def test_every_attack_has_a_reduced_budget_here():
    assert set(ATTACKS.names()) <= set(REDUCED), "add new attacks to REDUCED so the contract suite covers them"


@pytest.mark.parametrize("name,norm", CASES)
def test_attack_contract(cnn, digits_points, name, norm):
    x, y = digits_points
    # autoattack-fast keeps torchattacks' full Square budget: give it points it breaks quickly.
    x, y = (x[:6], y[:6]) if name != "autoattack-fast" else (x[:4], y[:4])
    threat = ThreatModel(norm, EPS[norm] * (3 if name == "autoattack-fast" else 1))
    cnn.train()  # the attack must run in eval mode and hand the model back in train mode
    bn = [m for m in cnn.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    stats = bn.running_mean.clone()
    first = next(cnn.parameters())
    grad = first.grad = torch.ones_like(first)  # a training loop's pending gradient must survive
    rng = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustnessWarning)
        a = run_attack(name, cnn, x, y, threat, REDUCED[name], seed=3, batch_size=4).x_adv
        b = run_attack(name, cnn, x, y, threat, REDUCED[name], seed=3, batch_size=4).x_adv
    assert cnn.training and all(m.training for m in cnn.modules())
    assert torch.equal(bn.running_mean, stats), "the attack updated BatchNorm statistics"
    assert torch.equal(torch.get_rng_state(), rng), "the attack changed the global RNG state"
    assert first.grad is grad and torch.equal(grad, torch.ones_like(first)) and first.requires_grad
    assert all(p.grad is None for p in cnn.parameters() if p is not first)
    first.grad = None
    cnn.eval()
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
    delta = (a - x).flatten(1)
    size = delta.abs().max(1)[0] if norm == "Linf" else delta.norm(dim=1)
    assert (size <= threat.eps * (1 + 1e-5) + 1e-6).all()
    assert torch.equal(a, b), "same seed, different adversarial examples"


def test_attacks_do_fool_the_model(cnn, digits_points):
    x, y = digits_points[0][:32], digits_points[1][:32]
    threat = ThreatModel("Linf", 0.2)
    with torch.no_grad():
        clean = (cnn(x).argmax(1) == y).float().mean()
    adv = run_attack("pgd", cnn, x, y, threat, {"steps": 10}, seed=0).x_adv
    with torch.no_grad():
        robust = (cnn(adv).argmax(1) == y).float().mean()
    assert robust < clean - 0.3


def test_bad_inputs_are_one_sentence_errors(cnn, digits_points):
    x, y = digits_points[0][:4], digits_points[1][:4]
    threat = ThreatModel("Linf", 0.1)
    with pytest.raises(AttackInputError, match="already normalised"):
        run_attack("pgd", cnn, (x - 0.5) / 0.25, y, threat)
    with pytest.raises(AttackInputError, match="divide by 255"):
        run_attack("pgd", cnn, x * 255, y, threat)
    with pytest.raises(AttackInputError, match="float"):
        run_attack("pgd", cnn, (x * 255).to(torch.uint8), y, threat)
    with pytest.raises(AttackInputError, match="0..9"):
        run_attack("pgd", cnn, x, y + 10, threat)
    with pytest.raises(ConfigError, match="pgdl2"):
        run_attack("pgd", cnn, x, y, ThreatModel("L2", 0.5))
    with pytest.raises(ConfigError, match="steps"):
        run_attack("pgd", cnn, x, y, threat, {"stpes": 3})
    with pytest.raises(UnknownNameError, match="Did you mean 'pgd'"):
        run_attack("pdg", cnn, x, y, threat)


def test_threat_model_parsing():
    assert ThreatModel.parse("Linf", "8/255").eps == pytest.approx(8 / 255)
    assert ThreatModel.parse("l2").eps == 0.5
    assert ThreatModel("Linf", "4/255").label == "Linf 4/255"
    for bad in ("0", "-1", "x/255", "1/0"):
        with pytest.raises(ConfigError):
            ThreatModel.parse("Linf", bad)
    with pytest.raises(ConfigError, match="Linf or L2"):
        ThreatModel.parse("L1", "1")


def test_sanity_checks_warn(cnn, digits_points):
    x, y = digits_points[0][:8], digits_points[1][:8]
    threat = ThreatModel("Linf", 0.1)
    softmax_model = torch.nn.Sequential(cnn, torch.nn.Softmax(dim=1)).eval()
    with pytest.warns(RobustnessWarning, match="softmax"):
        run_attack("fgsm", softmax_model, x, y, threat)

    class Noisy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, z):
            return self.inner(z) + torch.randn(len(z), 10)

    with pytest.warns(RobustnessWarning, match="autoattack-rand"):
        run_attack("autoattack", Noisy(cnn).eval(), x, y, threat,
                   {"apgd_steps": 2, "fab_steps": 2, "square_queries": 2, "n_target_classes": 2})
    cnn.train()
    try:
        with pytest.warns(RobustnessWarning, match="train mode"):
            run_attack("fgsm", cnn, x, y, threat)
    finally:
        cnn.eval()


def test_zero_gradient_and_target_count_checks(cnn, digits_points):
    x, y = digits_points[0][:8], digits_points[1][:8]

    class Quantised(torch.nn.Module):  # rounding kills the input gradient (gradient masking)
        def forward(self, z):
            return cnn((z * 4).round() / 4)

    with pytest.warns(RobustnessWarning, match="zero input gradient"):
        run_attack("apgd", Quantised().eval(), x, y, ThreatModel("Linf", 0.1), {"steps": 2, "loss": "dlr"})
    from unlearnbench.robust import checks

    with pytest.warns(RobustnessWarning, match="APGD-T and FAB-T use 4"):
        assert checks.check_n_classes(5, 9, ("apgd-ce", "apgd-t")) == 4
    with pytest.raises(AttackInputError, match="at least 4 classes"):
        checks.check_n_classes(3, 9, ("apgd-t",))
    with pytest.warns(RobustnessWarning, match="gradient masking"):
        checks.check_square({"clean": 90, "apgd-ce": 50, "fab-t": 50, "square": 45}, n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        checks.check_square({"clean": 90, "apgd-ce": 50, "fab-t": 50, "square": 50}, n=100)
