"""Shadow pools, LiRA and U-LiRA."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import SHADOW_CFG

from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.core.data import prepare
from unlearnbench.core.errors import UserError
from unlearnbench.core.train import TrainConfig
from unlearnbench.eval.engine import Evaluator
from unlearnbench.eval.lira import balanced_masks, fit_gaussians
from unlearnbench.eval.roc import attack_stats
from unlearnbench.eval.shadow import ShadowPool, lira_holdout, population
from unlearnbench.eval.shadow_train import train_pool


def test_balanced_masks_put_every_example_in_half_the_models():
    m = balanced_masks(8, 1000, seed=3)
    assert m.shape == (8, 1000) and (m.sum(0) == 4).all()
    assert not np.array_equal(m, balanced_masks(8, 1000, seed=4))


def test_gaussian_likelihood_ratio_on_synthetic_signals():
    """IN ~ N(mu_x + 2, 1), OUT ~ N(mu_x, 1) with per-example offsets mu_x: the online test
    should reach the Bayes AUC Phi(2 / sqrt(2)) = 0.921; a global threshold cannot, because the
    example offsets swamp the membership shift."""
    rng = np.random.default_rng(0)
    n_models, n = 64, 4000
    mu = rng.normal(0, 5, n)
    member = balanced_masks(n_models, n, seed=0)
    phi = mu + rng.normal(0, 1, (n_models, n)) + 2.0 * member
    target_member = rng.random(n) < 0.5
    target = mu + rng.normal(0, 1, n) + 2.0 * target_member
    for variance in ("per_example", "global"):
        fit = fit_gaussians(phi, member, variance=variance)
        st = attack_stats(fit.online(target)[target_member], fit.online(target)[~target_member])
        assert st.auc == pytest.approx(0.921, abs=0.02)
        off = fit.offline(target)
        assert attack_stats(off[target_member], off[~target_member]).auc == pytest.approx(0.921, abs=0.02)
    assert attack_stats(target[target_member], target[~target_member]).auc < 0.65
    assert fit_gaussians(phi, member).variance == "per_example"  # 32 IN and 32 OUT per example
    assert fit_gaussians(phi[:16], member[:16]).variance == "global"


def test_lira_beats_the_loss_threshold_at_low_fpr(lira_pool):
    """Leave-one-out on a digits pool of 8 MLPs: each of 4 shadows is the target, the other 7 the
    attacker's pool. The loss attack ranks exactly like ``threshold`` (a global threshold on phi)."""
    hold = lira_holdout(lira_pool, targets=4)
    base = hold["threshold"]
    assert base.n_members > 3000 and base.n_nonmembers > 3000
    for name in ("lira_online", "lira_offline"):
        st = hold[name]
        assert st.tpr_at_fpr[0.01] > 2 * base.tpr_at_fpr[0.01], (name, st, base)
        assert st.auc > base.auc + 0.015, (name, st.auc, base.auc)
    assert lira_pool.manifest["holdout"]["lira_online"]["auc"] == pytest.approx(hold["lira_online"].auc)


def test_pool_layout_and_reuse(lira_pool):
    m = lira_pool.manifest
    assert m["kind"] == "lira" and lira_pool.n == 8 and len(m["shadows"]) == 8
    splits, _ = prepare("digits", split_seed=0)
    assert lira_pool.phi.shape == lira_pool.masks.shape == (8, len(population(splits)))
    assert (lira_pool.masks.sum(0) == 4).all()
    ck = load_checkpoint(lira_pool.path / m["shadows"][0]["checkpoint"])
    assert ck.meta["kind"] == "shadow" and ck.meta["model"] == "mlp"
    # phi stored in the pool is what the shadow checkpoint predicts
    from unlearnbench.eval.predictions import Predictions

    again = Predictions.of(ck.build("cpu"), population(splits)).phi.numpy()
    assert np.allclose(again, lira_pool.phi[0], atol=1e-4)
    # re-running the same command finds every shadow done and trains nothing
    before = (lira_pool.path / "manifest.json").stat().st_mtime_ns
    pool = train_pool(lira_pool.path, dataset="digits", model="mlp", n=8, config=TrainConfig(**SHADOW_CFG), seed=0)
    assert pool.n == 8 and [s["seconds"] for s in pool.manifest["shadows"]] == [s["seconds"] for s in m["shadows"]]
    assert (lira_pool.path / "manifest.json").stat().st_mtime_ns >= before
    with pytest.raises(UserError, match="different settings"):
        train_pool(lira_pool.path, dataset="digits", model="mlp", n=6, config=TrainConfig(**SHADOW_CFG), seed=0)


def test_evaluator_runs_lira_against_a_target(lira_pool, digits_random):
    from unlearnbench.core.models import create_model
    from unlearnbench.core.train import fit

    info = digits_random.info
    target = create_model("mlp", 10, 1, 8, info.mean, info.std)
    splits, _ = prepare("digits", split_seed=0)  # the target trains on retain + forget
    fit(target, splits.train, None, info, TrainConfig(**{**SHADOW_CFG, "seed": 123}))
    r = Evaluator(metrics=["lira", "mia_threshold"], shadow_pool=lira_pool.path).evaluate(target, digits_random)
    for name in ("lira_online", "lira_offline"):
        for pair in ("forget_test", "retain_test"):
            for stat in ("auc", "bal_acc", "tpr_at_fpr_0.01"):
                assert 0 <= r[f"mia/{name}/{pair}/{stat}"] <= 1
            # 450 test images as non-members: FPR 0.1 % is below 1/450, so that TPR is undefined, not a number
            assert r.counts[f"mia/{name}/{pair}/n_nonmembers"] == 450
            assert f"mia/{name}/{pair}/tpr_at_fpr_0.001" not in r.values
            assert f"mia/{name}/{pair}/tpr_at_fpr_0.001" in r.undefined
        assert r.counts[f"mia/{name}/forget_test/n_members"] + r.counts[f"mia/{name}/retain_test/n_members"] == 1217
        # the target trained on both forget and retain: LiRA sees them as members
        assert r[f"mia/{name}/retain_test/auc"] > 0.52 and r[f"mia/{name}/forget_test/auc"] > 0.52
    assert r.directions["mia/lira_online/forget_test/auc"] == "reference"
    _, other_split = prepare("digits", "random:0.1", split_seed=1)
    with pytest.raises(UserError, match="split_seed 0"):
        Evaluator(metrics=["lira"], shadow_pool=lira_pool).evaluate(target, other_split)


def test_pool_errors(tmp_path):
    with pytest.raises(UserError, match="not a shadow pool"):
        ShadowPool.load(tmp_path)
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(UserError, match="exists and is not a shadow pool"):
        train_pool(tmp_path, dataset="digits", model="mlp", n=2, config=TrainConfig(epochs=1, device="cpu"))
    with pytest.raises(UserError, match="--forget"):
        train_pool(tmp_path / "u", dataset="digits", model="mlp", n=2, config=TrainConfig(epochs=1, device="cpu"),
                   ulira_method="finetune")


def test_lira_metric_by_construction(constructed):
    """A LiRA pool built by construction: every example's OUT shadows give phi about 0 and its IN
    shadows about -10. The target gives phi 5 to members (forget, retain) and -5 to test images.
    Offline LiRA (how far above the OUT Gaussian) ranks every member first: AUC 1; online LiRA
    (IN against OUT likelihood) finds phi 5 far less IN-like than -5: AUC 0. Class-wise without
    forgotten-class test images, the forget pair has no non-members and is left out."""
    import dataclasses
    from pathlib import Path

    import torch
    from eval_helpers import binary_logits

    from unlearnbench.core.data import parse_forget_spec

    def logits(phi):
        return binary_logits(torch.sigmoid(torch.tensor(phi, dtype=torch.float64)).tolist())

    model, data = constructed(logits([5.0, 5.0]), logits([5.0, 5.0]), logits([-5.0, -5.0]))
    train_idx = np.r_[data.forget.idx.numpy(), data.retain.idx.numpy()]
    masks = balanced_masks(8, 6, seed=0)
    phi = np.where(masks, -10.0, 0.0)
    for i in range(6):
        for side in (masks[:, i], ~masks[:, i]):
            phi[side, i] += np.resize([1.0, -1.0], side.sum())
    manifest = {"kind": "lira", "dataset": data.info.name, "split_seed": 0, "val_fraction": 0.1,
                "shadows": [{"index": j} for j in range(8)],
                "population": {"train_idx": train_idx.tolist(), "test_idx": data.test.idx.numpy().tolist()}}
    pool = ShadowPool(Path("."), manifest, masks=masks, phi=phi)
    r = Evaluator(metrics=["lira"], shadow_pool=pool).evaluate(model, data)
    for pair in ("forget_test", "retain_test"):
        assert r[f"mia/lira_offline/{pair}/auc"] == 1.0 and r[f"mia/lira_online/{pair}/auc"] == 0.0
        assert r.counts[f"mia/lira_online/{pair}/n_members"] == r.counts[f"mia/lira_offline/{pair}/n_nonmembers"] == 2
    keep = torch.ones(len(data.test), dtype=torch.bool)
    cw = dataclasses.replace(data, spec=parse_forget_spec("class:1"), forget_classes=(1,),
                             test_retained=data.test.select(keep, "test_retained"),
                             test_forgotten=data.test.select(~keep, "test_forgotten"))
    r = Evaluator(metrics=["lira"], shadow_pool=pool).evaluate(model, cw)
    assert r["mia/lira_offline/retain_test/auc"] == 1.0 and not any("forget_test" in k for k in r.values)
