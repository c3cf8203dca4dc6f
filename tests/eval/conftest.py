"""Fixtures of the evaluation tests: constructed predictions, tiny checkpoints, shadow pools."""

from __future__ import annotations

import pytest
from eval_helpers import SHADOW_CFG, make_constructed


@pytest.fixture
def constructed():
    """``make(forget, retain, test)`` -> (model, data) with exactly those logits."""
    return make_constructed


@pytest.fixture(scope="session")
def digits_ckpts(tmp_path_factory):
    """Tiny digits checkpoints: original, retrained without class 3, and an unlearned one
    (finetune on the retain set, via ``unlearnbench.unlearn.run``)."""
    from unlearnbench import unlearn
    from unlearnbench.core.checkpoint import save_checkpoint
    from unlearnbench.core.jobs import train_model
    from unlearnbench.core.train import TrainConfig

    folder = tmp_path_factory.mktemp("ckpts")
    cfg = TrainConfig(epochs=4, batch_size=64, lr=0.05, seed=0, device="cpu")
    orig = train_model("digits", "cnn", cfg)
    ret = train_model("digits", "cnn", cfg, exclude="class:3")
    res = unlearn.run("finetune", orig.model, ret.data, {"epochs": 1}, seed=0, device="cpu")
    save_checkpoint(folder / "original.pt", orig.model, orig.meta)
    save_checkpoint(folder / "retrain.pt", ret.model, ret.meta)
    meta = {**orig.meta, "kind": "unlearn", "method": "finetune", "forget": "class:3", "rte_seconds": res.seconds}
    save_checkpoint(folder / "unlearned.pt", res.model, meta)
    return {"original": folder / "original.pt", "retrain": folder / "retrain.pt", "unlearned": folder / "unlearned.pt"}


@pytest.fixture(scope="session")
def lira_pool(tmp_path_factory):
    from unlearnbench.core.train import TrainConfig
    from unlearnbench.eval.shadow_train import train_pool

    return train_pool(tmp_path_factory.mktemp("pool") / "lira8", dataset="digits", model="mlp", n=8,
                      config=TrainConfig(**SHADOW_CFG), seed=0)
