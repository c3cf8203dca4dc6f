"""Prune first, then unlearn (Unlearn-Sparse): the epoch-k snapshot, rewinding, training with the
mask fixed. The study-level wiring (sparse original, sparse Retrain reference) is in
tests/study/test_prune_first_study.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import seed_everything
from unlearnbench.core.train import TrainConfig, fit
from unlearnbench.unlearn.prune import EpochSnapshot, magnitude_masks, sparse_start, train_masked


def _cnn(info, seed=0):
    seed_everything(seed)
    return create_model("cnn", info.num_classes, info.in_channels, info.image_size, info.mean, info.std)


def test_snapshot_holds_the_weights_after_epoch_k(digits_splits):
    """A 3-epoch run's epoch-2 snapshot equals an independent 2-epoch run (constant lr, so the
    first two epochs of both runs are the same computation)."""
    info = digits_splits.info
    cfg = dict(batch_size=64, lr=0.05, schedule="constant", keep_best=False, seed=3, device="cpu")
    snap = EpochSnapshot(2)
    three = _cnn(info)
    fit(three, digits_splits.train, None, info, TrainConfig(epochs=3, **cfg), epoch_end=snap)
    two = _cnn(info)
    fit(two, digits_splits.train, None, info, TrainConfig(epochs=2, **cfg))
    assert snap.state is not None
    for k, v in two.state_dict().items():
        assert torch.equal(snap.state[k], v.cpu()), k
    # and the snapshot is not simply the final weights
    assert any(not torch.equal(snap.state[k], v) for k, v in three.state_dict().items())


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(1)
        self.fc = nn.Linear(1, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def test_rewind_prunes_by_final_magnitude_and_restores_epoch_k_survivors():
    final, early = _Tiny(), _Tiny()
    with torch.no_grad():
        final.conv.weight.copy_(torch.tensor([[[[0.1, -0.9], [0.5, -0.2]]]]))
        early.conv.weight.copy_(torch.tensor([[[[0.8, 0.05], [-0.3, 0.6]]]]))  # a different ranking
        early.bn.running_mean.fill_(0.75)
        early.fc.weight.fill_(0.25)
    start, masks = sparse_start(final, early.state_dict(), 0.5)
    # the two smallest |final| weights (0.1 and -0.2) go; by |early| it would have been 0.05 and -0.3
    assert masks["conv.weight"].flatten().tolist() == [False, True, True, False]
    assert torch.equal(start.conv.weight.flatten(), torch.tensor([0.0, 0.05, -0.3, 0.0]))
    assert float(start.bn.running_mean) == 0.75 and torch.all(start.fc.weight == 0.25)
    assert torch.equal(final.conv.weight.flatten(), torch.tensor([0.1, -0.9, 0.5, -0.2]))  # dense model untouched


def test_sparse_retrain_keeps_the_mask(digits_splits, digits_class3):
    """A fresh model trained on the retain set with weight decay and momentum: every pruned weight
    is exactly zero at the end, the survivors did train, and the parameters are plain again."""
    info = digits_splits.info
    dense = _cnn(info, seed=1)
    masks = magnitude_masks(dense, 0.7)
    fresh = _cnn(info, seed=2)
    init = {k: v.clone() for k, v in fresh.state_dict().items()}
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, weight_decay=5e-3, momentum=0.9, seed=0, device="cpu")
    train_masked(fresh, masks, digits_class3.retain, digits_splits.val, info, cfg, description="t")
    params = dict(fresh.named_parameters())
    assert set(fresh.state_dict()) == set(init)  # no weight_orig / weight_mask left behind
    for name, keep in masks.items():
        w = params[name].detach()
        assert torch.all(w[~keep] == 0), name
        assert not torch.equal(w[keep], init[name][keep]), name
        assert int((w == 0).sum()) == int((~keep).sum())  # the mask, not more and not less


def test_lr_rewinding_moves_each_decay_k_epochs_earlier():
    """main_imp.py steps a fresh MultiStepLR(91, 136) 8 times before the sparse run: the lr is
    0.1 for loop epochs 0-82, 0.01 for 83-127, 0.001 after, over the full 182 epochs."""
    from unlearnbench.core.recipes import RECIPES
    from unlearnbench.core.train import lr_lambda
    from unlearnbench.unlearn.prune import lr_rewound

    cfg = lr_rewound(RECIPES.get("paper-cifar").config(), 8)
    steps = 175
    f = lr_lambda(cfg, cfg.epochs * steps)
    lrs = {e: cfg.lr * f(e * steps) for e in (0, 82, 83, 127, 128, 181)}
    assert lrs == pytest.approx({0: 0.1, 82: 0.1, 83: 0.01, 127: 0.01, 128: 1e-3, 181: 1e-3})
    assert cfg.epochs == 182
    # a milestone at or before the rewind epoch has already decayed the lr
    short = lr_rewound(TrainConfig(epochs=20, lr=0.1, schedule="multistep", milestones=(0.25, 0.75)), 5)
    assert short.lr == pytest.approx(0.01) and short.milestones == pytest.approx((0.5,))
    assert lr_rewound(TrainConfig(schedule="cosine"), 8).schedule == "cosine"


def test_train_prune_writes_the_sparse_original(tmp_path):
    """`train --prune` (a dense run, OMP, rewind, masked retraining) writes a checkpoint with
    exactly the pruned fraction of conv weights at zero, and unlearning it with --prune keeps them."""
    from typer.testing import CliRunner

    from unlearnbench.cli import app
    from unlearnbench.core.checkpoint import load_checkpoint
    from unlearnbench.unlearn.prune import conv_sparsity

    runner = CliRunner()
    out = tmp_path / "sparse.pt"
    res = runner.invoke(app, ["train", "--dataset", "digits", "--epochs", "2", "--prune", "0.5", "--rewind-epoch", "1",
                              "--out", str(out), "-q", "--no-track"])
    assert res.exit_code == 0, res.output
    ckpt = load_checkpoint(out)
    sparse = ckpt.meta["sparse"]
    assert sparse["sparsity"] == 0.5 and sparse["rewind_epoch"] == 1 and sparse["conv_sparsity"] == 0.5
    assert conv_sparsity(ckpt.build()) == 0.5 and "val_acc" in sparse["dense_metrics"]
    ft = tmp_path / "ft.pt"
    res = runner.invoke(app, ["unlearn", "finetune", "-c", str(out), "-f", "class:3", "--prune", "0.5", "--set",
                              "epochs=1", "-o", str(ft), "-q", "--no-track", "--no-eval"])
    assert res.exit_code == 0, res.output
    assert conv_sparsity(load_checkpoint(ft).build()) == 0.5
    for args, needle in ((["--prune", "1.5"], "in (0, 1)"), (["--prune", "0.5", "--exclude", "class:3"], "unlearn retrain"),
                         (["--prune", "0.5", "--rewind-epoch", "2"], "--rewind-epoch must lie in [1, 2)")):
        res = runner.invoke(app, ["train", "--epochs", "2", *args, "--out", str(tmp_path / "x.pt"), "-q", "--no-track"])
        assert res.exit_code == 2 and needle in res.output, res.output


# ----------------------------------------------------------------------------- OMP utilities on hand-built models


class _TwoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 2, bias=False)
        self.b = nn.Sequential(nn.Conv2d(1, 1, 1, bias=True))
        self.fc = nn.Linear(1, 2)

    def forward(self, x):
        return self.fc(self.b(self.a(x)).mean((2, 3)))


def _two_conv():
    m = _TwoConv()
    with torch.no_grad():
        m.a.weight.copy_(torch.tensor([[[[0.4, -0.1], [0.3, 0.2]]]]))
        m.b[0].weight.fill_(-0.25)
        m.b[0].bias.fill_(0.01)  # a tiny bias: never pruned (convolution *weights* only)
        m.fc.weight.fill_(1e-4)
    return m


def test_omp_helpers_on_a_hand_built_model():
    from unlearnbench.unlearn.prune import apply_masks, conv_sparsity, conv_weights, mask_digest, omp, pruned_nonzero

    m = _two_conv()
    assert [n for n, _ in conv_weights(m)] == ["a.weight", "b.0.weight"]
    # |w| = 0.4 0.1 0.3 0.2 | 0.25: round(0.4 * 5) = 2 pruned, the smallest two (0.1, 0.2)
    masks = magnitude_masks(m, 0.4)
    assert masks["a.weight"].flatten().tolist() == [True, False, True, False] and masks["b.0.weight"].all()
    assert set(masks) == {"a.weight", "b.0.weight"} and pruned_nonzero(m, masks) == 2
    assert magnitude_masks(m, 0.0)["a.weight"].all()
    assert magnitude_masks(m, 0.7)["b.0.weight"].flatten().tolist() == [False]  # 4 of 5 (round 3.5 = 4): 0.25 goes too
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks(m, 1.0)
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_masks(m, -0.1)
    with pytest.raises(ValueError, match="no convolution"):
        magnitude_masks(nn.Linear(2, 2), 0.5)
    apply_masks(m, masks)
    assert m.a.weight.flatten().tolist() == pytest.approx([0.4, 0.0, 0.3, 0.0]) and pruned_nonzero(m, masks) == 0
    assert conv_sparsity(m) == 2 / 5 and m.b[0].bias.item() == pytest.approx(0.01)
    assert conv_sparsity(nn.Linear(2, 2)) == 0.0
    with torch.no_grad():
        m.a.weight.copy_(torch.tensor([[[[0.0, 0.0, ], [-0.5, 0.5]]]]))
    assert conv_sparsity(m) == 2 / 5  # exact zeros only, whatever the sign of the others
    one = nn.Conv2d(1, 1, 1, bias=False)
    nn.init.zeros_(one.weight)
    assert conv_sparsity(one) == 1.0
    # omp with a rewind state: the mask from the current weights, the survivors from the state
    m2, early = _two_conv(), _two_conv()
    with torch.no_grad():
        early.a.weight.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
    masks2 = omp(m2, 0.4, rewind_state=early.state_dict())
    assert torch.equal(masks2["a.weight"], masks["a.weight"])
    assert m2.a.weight.flatten().tolist() == [1.0, 0.0, 3.0, 0.0]
    # the digest names the mask: equal masks, equal digests; one flipped entry changes it
    assert mask_digest(masks) == mask_digest({k: v.clone() for k, v in reversed(masks.items())})
    flipped = {k: v.clone() for k, v in masks.items()}
    flipped["a.weight"][0, 0, 0, 0] = False
    assert mask_digest(flipped) != mask_digest(masks) and len(mask_digest(masks)) == 16
    renamed = {"x" + k: v for k, v in masks.items()}
    assert mask_digest(renamed) != mask_digest(masks)


def test_epoch_snapshot_keeps_the_epochs_asked_for_and_chains():
    from unlearnbench.unlearn.prune import EpochSnapshot

    with pytest.raises(ValueError, match="count from 1"):
        EpochSnapshot()
    with pytest.raises(ValueError, match="count from 1"):
        EpochSnapshot(0, 3)
    m = _two_conv()
    seen = []
    snap = EpochSnapshot(2, 3, inner=lambda e, r, model: seen.append(e) or (e == 3))
    assert snap.state is None
    results = []
    for epoch in (1, 2, 3):
        with torch.no_grad():
            m.a.weight.fill_(float(epoch))
        results.append(snap(epoch, {}, m))
    assert results == [False, False, True] and seen == [1, 2, 3]  # the inner callback's answer passes through
    assert sorted(snap.states) == [2, 3] and bool((snap.state["a.weight"] == 2.0).all())
    assert bool((snap.states[3]["a.weight"] == 3.0).all())
    assert EpochSnapshot(1)(1, {}, m) is None


def test_fixed_mask_zeroes_pruned_weights_in_every_forward_and_leaves_plain_parameters():
    from unlearnbench.unlearn.prune import fixed_mask

    m = _two_conv()
    masks = magnitude_masks(m, 0.4)
    with fixed_mask(m, masks):
        with torch.no_grad():
            m.a.weight_orig.add_(1.0)  # what an optimizer step does to the pruned entries too
        m(torch.ones(1, 1, 2, 2))  # the forward pre-hook recomputes weight = weight_orig * mask
        assert m.a.weight.flatten().tolist() == pytest.approx([1.4, 0.0, 1.3, 0.0])
    assert {n for n, _ in m.named_parameters()} == {"a.weight", "b.0.weight", "b.0.bias", "fc.weight", "fc.bias"}
    assert m.a.weight.flatten().tolist() == pytest.approx([1.4, 0.0, 1.3, 0.0])
