"""Contract suite over every registered attack: eps-ball and [0, 1] (asserted on the attack's raw
output, before any projection), modes, RNG, determinism; the fitting of outputs to the threat
model; AutoAttack's sanity checks (checks.py)."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

from unlearnbench.core.errors import ConfigError, UnknownNameError
from unlearnbench.core.registry import Entry
from unlearnbench.robust.attacks import ATTACKS, AttackContractError, AttackOutput, project_to_threat, run_attack
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


def assert_inside(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel) -> None:
    """The contract of a bounded attack, on its raw output: finite, in [0, 1] and in the eps-ball
    up to float rounding."""
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= -1e-6 and x_adv.max() <= 1 + 1e-6, "left [0, 1]"
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(1)[0] if threat.norm == "Linf" else delta.norm(dim=1)
    assert (size <= threat.eps * (1 + 1e-5) + 1e-6).all(), f"left the eps-ball: {size.max().item()} > {threat.eps}"


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
        raw = run_attack(name, cnn, x, y, threat, REDUCED[name], seed=3, batch_size=4, raw=True)
        final = run_attack(name, cnn, x, y, threat, REDUCED[name], seed=3, batch_size=4)
    assert cnn.training and all(m.training for m in cnn.modules())
    assert torch.equal(bn.running_mean, stats), "the attack updated BatchNorm statistics"
    assert torch.equal(torch.get_rng_state(), rng), "the attack changed the global RNG state"
    assert first.grad is grad and torch.equal(grad, torch.ones_like(first)) and first.requires_grad
    assert all(p.grad is None for p in cnn.parameters() if p is not first)
    first.grad = None
    cnn.eval()
    a, b = raw.x_adv, final.x_adv
    assert a.shape == x.shape and b.dtype == torch.float32
    if ATTACKS.info(name)["kind"] != "minimum-norm":
        assert_inside(a, x, threat)  # the attack itself, not the projection, keeps the contract
    assert_inside(b, x, threat)
    # Same seed, same examples; and the final images are the raw ones, fitted only where needed.
    fitted = a if raw.robust is not None else project_to_threat(x, a, threat)
    assert torch.equal(fitted, b), "same seed, different adversarial examples"


def test_a_bounded_attack_leaving_the_ball_fails_instead_of_counting_robust(cnn, digits_points, monkeypatch):
    x, y = digits_points[0][:6], digits_points[1][:6]
    threat = ThreatModel("Linf", 0.1)

    def leaky(model, x, y, threat, cfg, batch_size):  # a PGD with a forgotten projection
        return AttackOutput((x + 2 * threat.eps * torch.sign(torch.randn_like(x))).clamp(0, 1))

    monkeypatch.setitem(ATTACKS._entries, "leaky", Entry("leaky", leaky, {**ATTACKS.info("pgd")}))
    raw = run_attack("leaky", cnn, x, y, threat, raw=True).x_adv
    with pytest.raises(AssertionError, match="eps-ball"):
        assert_inside(raw, x, threat)  # what the contract test asserts
    with pytest.raises(AttackContractError, match="6 of 6 points outside the Linf 0.1 ball"):
        run_attack("leaky", cnn, x, y, threat)
    # A minimum-norm attack may stop beyond eps: that point is not adversarial, and only it is reset.
    monkeypatch.setitem(ATTACKS._entries, "leaky", Entry("leaky", leaky, {**ATTACKS.info("cw")}))
    assert torch.equal(run_attack("leaky", cnn, x, y, threat).x_adv, x)


def test_projection_touches_only_the_rows_outside_the_threat_model():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 4, 4) * 0.8 + 0.1
    x[2, 0, 0, 0] = 1.0
    eps = 0.05
    adv = (x + eps * (2 * torch.rand_like(x) - 1) * 0.99).clamp(0, 1)  # rows inside
    adv[1, 0, 0, 0] = x[1, 0, 0, 0] + eps * (1 + 1e-6)  # over eps by rounding
    adv[2, 0, 0, 0] = 1 + 1e-7  # over 1 by rounding (a white pixel)
    adv[3] = x[3] + 3 * eps  # far outside: not an adversarial example under the threat model
    out = project_to_threat(x, adv, ThreatModel("Linf", eps))
    for row in (0, 4):
        assert torch.equal(out[row], adv[row]), "a row inside was rewritten"
    assert (out[1] - x[1]).abs().max() <= eps + 1e-7 and torch.equal(out[1, 0, 1:], adv[1, 0, 1:])
    assert out[2].max() <= 1 and torch.equal(out[2, 0, 1:], adv[2, 0, 1:])
    assert torch.equal(out[3], x[3])
    # L2: a row over eps by rounding is scaled back to the sphere, the others kept bit for bit.
    d = torch.randn_like(x)
    d = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    adv2 = x + 0.5 * eps * d
    adv2[0] = x[0] + eps * (1 + 1e-6) * d[0]
    out2 = project_to_threat(x, adv2, ThreatModel("L2", eps))
    assert torch.equal(out2[1:], adv2[1:]) and (out2[0] - x[0]).flatten().norm() <= eps * (1 + 1e-6)


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


def test_randomness_check_takes_five_passes_like_the_reference(cnn, digits_points):
    from unlearnbench.robust import checks

    x, y = digits_points[0][:8], digits_points[1][:8]

    class EveryFourth(torch.nn.Module):  # random on one call in four: two passes see nothing
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, z):
            self.calls += 1
            out = cnn(z)
            return out + 5 * torch.randn_like(out) if self.calls % 4 == 0 else out

    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        assert not checks.check_randomized(EveryFourth(), x, y, n=2)
        assert not checks.check_randomized(cnn, x, y)  # a deterministic model raises no flag
    with pytest.warns(RobustnessWarning, match="5 forward passes"):
        assert checks.check_randomized(EveryFourth(), x, y)


def test_dynamic_model_check(cnn, digits_points):
    from unlearnbench.robust import checks

    x = digits_points[0][:4]

    class TestTimeStep(torch.nn.Module):  # a defence that takes a gradient step on its input
        def forward(self, z):
            with torch.enable_grad():
                z0 = z.detach().requires_grad_()
                g = torch.autograd.grad(cnn(z0).logsumexp(1).sum(), z0)[0]
            return cnn((z - 0.01 * g.sign()).clamp(0, 1))

    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        assert not checks.check_dynamic(cnn, x)
    tracer = sys.gettrace()
    with pytest.warns(RobustnessWarning, match="dynamic"):
        assert checks.check_dynamic(TestTimeStep(), x)
    assert sys.gettrace() is tracer  # a coverage/debugger tracer is put back


def test_zero_gradient_points_are_counted_once_each(cnn, digits_points):
    """APGD-T runs one DLR attack per target class on the same points: the reference's flag counts
    points, so the count can never exceed N (summing per run gave 2N here)."""
    x, y = digits_points[0][:8], digits_points[1][:8]

    class Quantised(torch.nn.Module):  # rounding kills the input gradient everywhere
        def forward(self, z):
            return cnn((z * 4).round() / 4)

    cfg = {"apgd_steps": 2, "fab_steps": 2, "square_queries": 2, "n_target_classes": 2}
    with pytest.warns(RobustnessWarning, match="zero input gradient") as seen:
        out = run_attack("autoattack", Quantised().eval(), x, y, ThreatModel("Linf", 0.1), cfg)
    (msg,) = [str(w.message) for w in seen if "zero input gradient" in str(w.message)]
    entered = out.stages["apgd-ce"]  # every point APGD-T attacked has a zero DLR gradient
    assert entered > 0 and msg.startswith(f"{entered} of 8 points")
