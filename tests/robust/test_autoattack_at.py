"""AutoAttack parity with pyautoattack on an *adversarially trained* digits cnn (where the later
stages and the targeted losses decide the verdicts), Linf and L2, APGD-DLR included: per point,
comparing the adversarial images, not only which points stay robust. Plus robust accuracy's
denominator on a hand-built model with clean mistakes.

Budget: the full standard AutoAttack (APGD-CE 100, APGD-T 9 x 100, FAB-T 9 x 100, Square 5000)
and APGD-DLR at 100 iterations, on 10 points (about 40 s for the file on 2 CPU cores);
benchmarks/autoattack_speed.py runs it on 100 points of a PGD-AT Fashion-MNIST model.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from unlearnbench.core.data import TensorSet
from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import seed_everything
from unlearnbench.core.train import TrainConfig
from unlearnbench.robust.aa.apgd import APGD
from unlearnbench.robust.attacks import run_attack
from unlearnbench.robust.evaluate import robust_accuracy
from unlearnbench.robust.threat import ThreatModel

pyaa = pytest.importorskip("pyautoattack")


@pytest.fixture(scope="module")
def at_cnn(digits_splits):
    """PGD-AT (Madry) digits cnn, eps 0.1: robust to most Linf 0.1 attacks, so robust accuracy is
    decided by the whole cascade, not by APGD-CE alone."""
    from unlearnbench.robust.train import adversarial_fit

    info = digits_splits.info
    seed_everything(0)
    model = create_model("cnn", info.num_classes, info.in_channels, info.image_size, info.mean, info.std)
    adversarial_fit(model, digits_splits.train, digits_splits.val, info,
                    TrainConfig(epochs=5, batch_size=64, lr=0.05, seed=0, device="cpu"),
                    {"method": "pgd_at", "eps": 0.1, "steps": 3, "check_size": 64})
    return model.eval()


def _points(splits, n=10):
    tset = splits.test.select(torch.arange(n))
    return tset, tset.x.float() / 255, tset.y


@pytest.mark.parametrize("norm,eps", [("Linf", 0.16), ("L2", 0.9)])
def test_autoattack_matches_pyautoattack_per_point_on_an_adversarially_trained_model(at_cnn, digits_splits, norm, eps):
    from pyautoattack import AutoAttack

    tset, x, y = _points(digits_splits)
    ref = AutoAttack(at_cnn, device="cpu", eps=eps, norm=norm, seed=0, version="standard")
    ref.logger.disabled = True
    # the standard budget, as the platform's defaults
    assert ref.apgd.n_iter == ref.apgd_targeted.n_iter == ref.fab.n_iter == 100 and ref.square.n_queries == 5000
    assert ref.apgd_targeted.n_target_classes == ref.fab.n_target_classes == 9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_ref, _ = ref.run_standard_evaluation(x, y)  # its default batch size: 250
        with torch.no_grad():
            ref_robust = (at_cnn(x).argmax(1) == y) & (at_cnn(x_ref).argmax(1) == y)
        res = robust_accuracy(at_cnn, tset, "autoattack", ThreatModel(norm, eps), seed=0, batch_size=4,
                              return_adv=True)
    assert 0 < int(ref_robust.sum()) < int((at_cnn(x).argmax(1) == y).sum()), "pick an eps where both outcomes occur"
    assert torch.equal(res.robust, ref_robust), "per-point verdicts differ from pyautoattack"
    both_broke = ~res.robust & ~ref_robust & (res.x_adv != x).flatten(1).any(1)
    assert both_broke.any()
    diff = (res.x_adv[both_broke] - x_ref[both_broke]).abs().max().item()
    assert diff <= 1e-6, f"adversarial images differ from pyautoattack's by {diff}"
    assert torch.equal(res.x_adv[res.robust], x[res.robust])  # unbroken points keep the clean image


@pytest.mark.parametrize("norm,eps", [("Linf", 0.16), ("L2", 0.9)])
def test_apgd_dlr_matches_pyautoattack_on_an_adversarially_trained_model(at_cnn, digits_splits, norm, eps):
    from pyautoattack.autopgd_base import APGDAttack

    _, x, y = _points(digits_splits)
    ref = APGDAttack(at_cnn, n_iter=100, norm=norm, eps=eps, seed=0, loss="dlr", rho=0.75, device="cpu").perturb(x, y)
    mine, acc = APGD(at_cnn, norm=norm, eps=eps, steps=100, seed=0, loss="dlr").perturb_chunks(x, y)
    with torch.no_grad():
        assert torch.equal(acc, at_cnn(ref).argmax(1) == y)
    assert (~acc).any() and acc.any()
    assert (mine - ref).abs().max().item() <= 1e-6


class _OnePixel(torch.nn.Module):
    """4 classes decided by the first pixel p: class 1 when p > 0.5, else class 0."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        p = x[:, 0, 0, 0]
        low = -torch.ones_like(p) * 5
        return torch.stack([self.w * (0.5 - p), self.w * (p - 0.5), low, low], dim=1)


@pytest.mark.parametrize("attack,cfg", [("pgd", {"steps": 10}),
                                        ("autoattack", {"apgd_steps": 10, "fab_steps": 5, "square_queries": 20,
                                                        "n_target_classes": 2})])
def test_robust_accuracy_divides_by_all_points_clean_mistakes_included(attack, cfg):
    """Five points, eps 0.1: two robust (far from p = 0.5), one broken (0.45 -> 0.55), two clean
    mistakes. Robust accuracy is 2/5 = 40 % (dividing by the 3 clean-correct points gives 66.7 %)."""
    pixels = torch.tensor([26, 115, 230, 140, 51], dtype=torch.uint8)  # p = 0.10, 0.45, 0.90, 0.55, 0.20
    labels = torch.tensor([0, 0, 1, 0, 1])
    x = torch.zeros(5, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = pixels
    model = _OnePixel().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = robust_accuracy(model, TensorSet(x, labels, torch.arange(5)), attack, ThreatModel("Linf", 0.1),
                              config=cfg)
    assert res.n == 5
    assert res.clean_acc == pytest.approx(60.0)
    assert res.robust_acc == pytest.approx(40.0)
    assert res.robust.tolist() == [True, False, True, False, False]
    out = run_attack(attack, model, x.float() / 255, labels, ThreatModel("Linf", 0.1), cfg)
    assert bool((out.x_adv[1, 0, 0, 0] > 0.5).item())  # the breakable point was really broken


def test_robust_result_saved_with_its_extras(tmp_path):
    """Adversarial images come back only when asked for; saved, they carry the verdicts and the
    caller's extra fields."""
    from unlearnbench.robust.evaluate import save_adversarial

    x = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.tensor([26, 115, 230], dtype=torch.uint8)
    data = TensorSet(x, torch.tensor([0, 0, 1]), torch.arange(3))
    model = _OnePixel().eval()
    plain = robust_accuracy(model, data, "pgd", ThreatModel("Linf", 0.1), config={"steps": 5})
    assert plain.x_adv is None and plain.y is None
    with pytest.raises(ValueError, match="no adversarial examples"):
        save_adversarial(tmp_path / "none.pt", plain)
    res = robust_accuracy(model, data, "pgd", ThreatModel("Linf", 0.1), config={"steps": 5}, return_adv=True)
    path = save_adversarial(tmp_path / "adv" / "a.pt", res, extra={"method": "salun", "seed": 3})
    saved = torch.load(path, weights_only=True)
    assert saved["method"] == "salun" and saved["seed"] == 3 and saved["attack"] == "pgd" and saved["eps"] == 0.1
    assert torch.equal(saved["robust"], res.robust) and saved["robust"].tolist() == [True, False, True]
    assert saved["x_adv"].shape == (3, 1, 4, 4) and torch.equal(saved["y"], torch.tensor([0, 0, 1]))
