"""A study's pruned rows (prune_mode: rewind, the default): the sparse original is OMP of the dense
original rewound to its epoch-k weights and retrained with the mask; the pruned rows are compared
with a sparse Retrain (the same mask), not the dense one."""

from __future__ import annotations

import pytest
import torch
from study_helpers import bench, runs_of

from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.study import load_study, model_dir, preflight, rewind_path
from unlearnbench.unlearn.prune import magnitude_masks, mask_digest


@pytest.fixture(scope="module")
def pruned_study(tiny_study_module, mlflow_uri, tmp_path_factory):
    work = tmp_path_factory.mktemp("prune-work")
    path, experiment = tiny_study_module(seeds=[0], prune=[None, 0.5], rewind_epoch=1,
                                         methods=[{"name": "finetune", "config": {"epochs": 1}}])
    result = bench(path, experiment, mlflow_uri, work)
    assert result.exit_code == 0, result.output
    return path, experiment, work


@pytest.fixture(scope="module")
def tiny_study_module(tmp_path_factory):
    import uuid

    import yaml
    from study_helpers import TINY

    def write(**changes):
        data = {**TINY, **changes}
        path = tmp_path_factory.mktemp("prune-study") / "tiny-prune.yaml"
        path.write_text(yaml.safe_dump(data))
        return path, f"study-{uuid.uuid4().hex[:8]}"

    return write


def test_sparse_original_is_rewound_and_retrained_with_the_dense_mask(pruned_study):
    path, _, work = pruned_study
    cfg = load_study(path)
    mdir = model_dir(cfg, work, 0, preflight(cfg, None))  # the cache folder is keyed by the data digest
    dense = load_checkpoint(mdir / "original.pt")
    early = load_checkpoint(rewind_path(mdir / "original.pt", 1))
    last = load_checkpoint(rewind_path(mdir / "original.pt", 2))  # TINY trains 2 epochs
    sparse = load_checkpoint(mdir / "original-omp0.5-rewind1.pt")
    retrain = next(load_checkpoint(p) for p in mdir.glob("retrain-*-omp0.5.pt"))
    assert early.meta["epoch"] == 1 and last.meta["epoch"] == 2
    masks = magnitude_masks(last.build(), 0.5)  # OMP of the last-epoch dense weights, as main_imp.py
    for ckpt in (sparse, retrain):
        assert ckpt.meta["sparse"]["mask"] == mask_digest(masks)
        for name, keep in masks.items():
            assert torch.all(ckpt.state_dict[name][~keep] == 0), name
    assert sparse.meta["kind"] == "original" and sparse.meta["sparse"]["rewind_epoch"] == 1
    assert retrain.meta["kind"] == "retrain" and retrain.meta["exclude"] == "class:3"
    # retrained from the rewind point: neither the dense final weights nor the epoch-1 weights
    name = next(iter(masks))
    keep = masks[name]
    for other in (dense, early, last):
        assert not torch.equal(sparse.state_dict[name][keep], other.state_dict[name][keep])


def test_pruned_rows_are_compared_with_the_sparse_retrain(pruned_study, mlflow_uri):
    _, experiment, _ = pruned_study
    _, parents, children = runs_of(mlflow_uri, experiment)
    by_label = {r.data.tags["label"]: r.data.metrics for r in children}
    assert {"retrain", "retrain [prune=0.5]", "original", "original [prune=0.5]", "finetune",
            "finetune [prune=0.5]"} <= set(by_label)
    sparse_ref, dense_ref = by_label["retrain [prune=0.5]"], by_label["retrain"]
    ft = by_label["finetune [prune=0.5]"]
    for key in ("forget_acc", "retain_acc", "mia_efficacy"):
        assert ft[f"gap/{key}"] == pytest.approx(abs(ft[key] - sparse_ref[key]), abs=1e-9)
    assert any(abs(ft[k] - dense_ref[k]) != pytest.approx(ft[f"gap/{k}"]) for k in ("forget_acc", "retain_acc", "mia_efficacy"))
    dense_ft = by_label["finetune"]
    assert dense_ft["gap/forget_acc"] == pytest.approx(abs(dense_ft["forget_acc"] - dense_ref["forget_acc"]), abs=1e-9)


def test_regression_check_measures_pruned_rows_against_the_sparse_retrain():
    """UA of ``finetune [prune=0.95]`` moved from 10 to 20 while the sparse Retrain stayed at 20
    (the dense one at 5): closer to its own reference, so an improvement, not a regression."""
    from unlearnbench.reports.compare import compare

    def summary(ft_ua):
        def row(label, method, variant, ua):
            return {"forget": "class:0", "label": label, "method": method, "variant": variant,
                    "values": {"ua": {"mean": ua, "std": None, "n": 1}}}
        return {"rows": [row("retrain", "retrain", "", 5.0), row("retrain [prune=0.95]", "retrain", "prune=0.95", 20.0),
                         row("finetune [prune=0.95]", "finetune", "prune=0.95", ft_ua)]}

    changes = compare(summary(20.0), summary(10.0))
    assert [(c.label, c.status) for c in changes] == [("finetune [prune=0.95]", "improvement")]
