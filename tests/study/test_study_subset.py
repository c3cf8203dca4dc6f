"""Studies on part of the training set (--per-class / per_class:) and the data key of the model cache."""

from __future__ import annotations

from study_helpers import bench, runs_of

from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.core.data import fingerprint


def test_study_on_a_per_class_subset(tiny_study, mlflow_uri, tmp_path):
    path, experiment = tiny_study(name="tiny-subset", model="mlp", seeds=[0], train={"epochs": 1},
                                  methods=[{"name": "finetune", "config": {"epochs": 1}}],
                                  evaluation={"metrics": ["ua", "retain_acc"]})
    work = tmp_path / "work"
    res = bench(path, experiment, mlflow_uri, work, "--per-class", "30")
    assert res.exit_code == 0, res.output
    originals = list(work.glob("models/**/original.pt"))
    assert len(originals) == 1 and "-data" in str(originals[0])  # the cache key holds the data digest
    fp = load_checkpoint(originals[0]).meta[fingerprint.KEY]
    assert (fp["per_class"], fp["n_train"]) == (30, 300)
    _, parents, children = runs_of(mlflow_uri, experiment)
    assert parents[0].data.tags["data_sha256"] == fp["train_sha256"][:12]
    assert parents[0].data.params["per_class"] == "30"
    unlearned = next(r for r in children if r.data.tags["kind"] == "unlearn")
    assert unlearned.info.status == "FINISHED"
    # the full data is another study (its id holds per_class; 0 = all = unset)
    from unlearnbench.study import load_study, study_id

    ids = {n: study_id(load_study(path, per_class=n)) for n in (None, 0, 30)}
    assert ids[None] == ids[0] != ids[30] == parents[0].data.tags["study_id"]


def test_bad_subset_in_a_study_is_one_sentence(tiny_study, mlflow_uri, tmp_path):
    path, experiment = tiny_study(per_class=-3)
    res = bench(path, experiment, mlflow_uri, tmp_path)
    assert res.exit_code == 2 and "--per-class takes" in res.output and "Traceback" not in res.output
