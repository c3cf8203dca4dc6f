"""``keep_best``: which epoch's weights ``fit`` (and the ``retrain`` method) restore."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import unlearnbench.core.train as train_mod
from unlearnbench.core.data import prepare
from unlearnbench.core.models import create_model
from unlearnbench.core.train import TrainConfig, fit, improves, val_metrics


def test_improves_rule_on_a_scripted_sequence():
    """Higher accuracy wins; equal accuracy -> lower loss; equal both -> the later epoch."""
    seq = [(90.0, 0.50), (95.0, 0.40), (95.0, 0.30), (95.0, 0.35), (95.0, 0.30), (94.0, 0.05)]
    best_acc = best_loss = math.nan
    best_epoch = 0
    for epoch, (acc, loss) in enumerate(seq, 1):
        if improves(acc, loss, best_acc, best_loss):
            best_acc, best_loss, best_epoch = acc, loss, epoch
    # epoch 2 first reaches 95 (the old rule kept it); 3 has a lower loss; 5 ties 3 and is later
    assert best_epoch == 5
    assert improves(95.0, 0.4, math.nan, math.nan)
    assert not improves(94.9, 0.0, 95.0, 1.0)
    assert improves(95.1, 9.0, 95.0, 0.1)


def test_fit_restores_the_epoch_the_rule_picks(monkeypatch):
    """``fit`` with a scripted validation sequence restores exactly that epoch's weights."""
    seq = iter([(80.0, 0.9), (90.0, 0.6), (90.0, 0.5), (90.0, 0.55), (90.0, 0.5), (89.0, 0.1)])
    monkeypatch.setattr(train_mod, "val_metrics", lambda model, val: next(seq))
    splits, _ = prepare("digits", split_seed=0)
    info = splits.info
    model = create_model("mlp", 10, 1, 8, info.mean, info.std)
    states = {}

    def snapshot(epoch, record, m):
        states[epoch] = {k: v.detach().clone() for k, v in m.state_dict().items()}

    cfg = TrainConfig(epochs=6, batch_size=64, lr=0.05, keep_best=True, seed=0, device="cpu")
    result = fit(model, splits.train, splits.val, info, cfg, epoch_end=snapshot)
    assert result.best_epoch == 5 and result.best_val_acc == 90.0 and result.best_val_loss == 0.5
    assert [r["val_loss"] for r in result.history] == [0.9, 0.6, 0.5, 0.55, 0.5, 0.1]
    got = model.state_dict()
    assert all(torch.equal(got[k], states[5][k]) for k in got)
    assert not all(torch.equal(got[k], states[3][k]) for k in got)  # the epochs' weights differ


def test_val_metrics_match_an_independent_computation():
    splits, _ = prepare("digits", split_seed=0)
    info = splits.info
    model = create_model("mlp", 10, 1, 8, info.mean, info.std).eval()
    acc, loss = val_metrics(model, splits.val)
    # independent: float64 log-softmax in numpy on the logits ``predict`` returns
    z = train_mod.predict(model, splits.val).double().numpy()
    y = splits.val.y.numpy()
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert acc == pytest.approx(100.0 * np.mean(z.argmax(1) == y))
    assert loss == pytest.approx(-logp[np.arange(len(y)), y].mean(), rel=1e-5)


def test_retrain_method_uses_the_same_rule(monkeypatch):
    """The ``retrain`` unlearning method (the gold reference) breaks ties the same way."""
    import unlearnbench.unlearn.retrain as retrain_mod
    from unlearnbench import unlearn

    seq = iter([(70.0, 0.9), (90.0, 0.6), (90.0, 0.4), (90.0, 0.45)])
    states = []

    def scripted(m, val):
        states.append({k: v.detach().clone() for k, v in m.state_dict().items()})
        return next(seq)

    monkeypatch.setattr(retrain_mod, "val_metrics", scripted)
    _, data = prepare("digits", "random:0.1", split_seed=0)
    info = data.info
    model = create_model("mlp", 10, 1, 8, info.mean, info.std)
    out = unlearn.run("retrain", model, data, {"epochs": 4, "keep_best": True}, seed=0, device="cpu").model
    got = out.state_dict()
    assert len(states) == 4
    assert all(torch.equal(got[k], states[2][k]) for k in got)  # epoch 3: 90 % at the lowest loss
