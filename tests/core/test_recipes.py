"""Named training recipes: the registry's values, --recipe on train (fields reach the checkpoint and
MLflow), `ls recipes`, and a study's recipe reaching its TrainConfig."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app
from unlearnbench.core.checkpoint import load_checkpoint
from unlearnbench.core.data import DATASETS
from unlearnbench.core.recipes import RECIPES, default_recipe, describe, recipe_train
from unlearnbench.core.train import lr_lambda, recipe_for

runner = CliRunner()


def test_paper_cifar_is_main_train_py():
    """Every value of the release's main_train.py (SalUn / Unlearn-Sparse), checked one by one."""
    cfg = RECIPES.get("paper-cifar").config()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (182, 256, 0.1, 0.9, 5e-4)
    assert cfg.schedule == "multistep" and cfg.gamma == 0.1 and not cfg.nesterov
    assert cfg.label_smoothing == 0 and cfg.warmup == 0 and not cfg.amp and not cfg.cpu_bf16
    # the release trains with crop + flip and reports the best-validation checkpoint (0model_SA_best);
    # paper-digits keeps both, being the same protocol at digits scale
    for name in ("paper-cifar", "paper-digits"):
        c = RECIPES.get(name).config()
        assert c.augment and c.keep_best, name
    # MultiStepLR(milestones=[91, 136]) stepped per epoch: lr 0.1 through epoch 91, 0.01 through 136, then 0.001.
    steps = 175  # 45,000 // 256
    f = lr_lambda(cfg, cfg.epochs * steps)
    at_epoch = [f(e * steps) for e in (0, 90, 91, 135, 136, 181)]
    assert at_epoch == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert f(91 * steps - 1) == 1 and f(136 * steps - 1) == pytest.approx(0.1)


def test_fast_cifar_is_the_cifar_default_and_carries_its_caveat():
    assert default_recipe("cifar10") == default_recipe("svhn") == "fast-cifar"
    assert recipe_train(None, "cifar100") == recipe_for("cifar100")
    assert recipe_train(None, "digits") == recipe_for("digits")
    fast = RECIPES.get("fast-cifar")
    assert fast.train["label_smoothing"] == 0.1 and "confidence" in fast.caveat
    assert not RECIPES.get("paper-cifar").caveat


@pytest.mark.parametrize("dataset", DATASETS.names() + ["unknown-user-data"])
def test_every_dataset_default_recipe_is_the_training_default(dataset):
    """Two implementations of "which recipe trains dataset D by default" (the registry's name and
    core.train's dict) agree for every registered dataset, not only the ones someone named."""
    assert recipe_train(None, dataset) == recipe_for(dataset)
    expected = "fast-cifar" if dataset in ("cifar10", "cifar100", "cifar20", "svhn") else (
        dataset if dataset in ("digits", "synthetic") else "default")
    assert default_recipe(dataset) == expected


def test_recipe_descriptions_state_the_reference_values():
    """The one-line summaries `ls recipes` and reports show, against the sources' values: SalUn's
    main_train.py (MultiStepLR at epochs 91 and 136 of 182, x0.1, fp32, plain CE) and the design
    notes' fast recipe (Nesterov, lr 0.2, batch 512, warm-up 1/15 of the steps, smoothing 0.1)."""
    assert describe(RECIPES.get("paper-cifar")) == (
        "182 ep, SGD lr 0.1 mom 0.9 wd 0.0005, batch 256, multistep ×0.1 at 91/136, plain CE, fp32")
    assert describe(RECIPES.get("paper-digits")) == (
        "20 ep, SGD lr 0.05 mom 0.9 wd 0.0005, batch 64, multistep ×0.1 at 10/15, plain CE, fp32")
    assert describe(RECIPES.get("fast-cifar")) == (
        "40 ep, Nesterov SGD lr 0.2 mom 0.9 wd 0.0005, batch 512, cosine + 0.0667 warm-up, label smoothing 0.1, "
        "bf16 autocast (CUDA and bf16 CPUs)")
    assert describe(RECIPES.get("digits")).endswith("cosine, plain CE, bf16 autocast on CUDA")
    # each precision combination has its own words
    from dataclasses import replace

    base = RECIPES.get("digits")
    words = {describe(replace(base, train={**base.train, "amp": a, "cpu_bf16": c})).rsplit(", ", 1)[1]
             for a in (True, False) for c in (True, False)}
    assert words == {"bf16 autocast (CUDA and bf16 CPUs)", "bf16 autocast on CUDA", "bf16 autocast on bf16 CPUs", "fp32"}


def test_only_the_reference_recipe_claims_to_be_a_paper_protocol():
    """paper=True is what lets a report call numbers "the paper's protocol"; only paper-cifar
    carries the release's values, and paper-retrain the papers' Retrain (paper-digits is paper-cifar's
    shape at digits scale, not a protocol)."""
    assert {n for n in RECIPES.names() if RECIPES.get(n).paper} == {"paper-cifar", "paper-retrain"}
    assert all(RECIPES.get(n).differences == () for n in RECIPES.names() if not RECIPES.get(n).paper)


def test_ls_recipes_shows_settings_and_the_smoothing_caveat():
    result = runner.invoke(app, ["ls", "recipes"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "paper-cifar" in result.output and "182 ep" in result.output
    assert "label smoothing 0.1 caps the training-set confidence" in result.output


def test_recipe_fields_reach_the_checkpoint_and_mlflow(tmp_path, mlflow_uri):
    import mlflow

    out = tmp_path / "orig.pt"
    result = runner.invoke(app, [
        "train", "--dataset", "digits", "--recipe", "paper-digits", "--epochs", "2", "--out", str(out), "-q",
        "--tracking-uri", mlflow_uri, "--experiment", "recipes",
    ])
    assert result.exit_code == 0, result.output
    meta = load_checkpoint(out).meta
    assert meta["recipe"] == "paper-digits"
    tc = meta["train_config"]
    # the recipe's values, with the explicit --epochs on top
    assert tc["epochs"] == 2 and tc["schedule"] == "multistep" and tuple(tc["milestones"]) == (0.5, 0.75)
    assert tc["label_smoothing"] == 0 and tc["amp"] is False and tc["lr"] == 0.05
    mlflow.set_tracking_uri(mlflow_uri)
    row = mlflow.search_runs(experiment_names=["recipes"]).iloc[0]
    assert row["params.recipe"] == "paper-digits" and row["params.schedule"] == "multistep"


def test_unknown_recipe_is_one_sentence_and_exit_2(tmp_path):
    out = tmp_path / "never.pt"
    result = runner.invoke(app, ["train", "--recipe", "paper-cifr", "--out", str(out), "-q", "--no-track"])
    assert result.exit_code == 2 and "Did you mean 'paper-cifar'" in result.output
    assert not out.exists()


def test_study_recipe_sets_the_train_config_and_train_keys_override_it():
    from unlearnbench.study import load_study, study_id, train_config

    cfg = load_study("cifar10-salun")
    tc = train_config(cfg, 1)
    assert cfg.recipe == "paper-cifar" and tc.epochs == 182 and tc.label_smoothing == 0 and not tc.amp
    assert cfg.differences  # a paper study lists what still differs
    over = load_study("cifar10-salun", train={"epochs": 3})
    assert train_config(over, 1).epochs == 3 and train_config(over, 1).lr == 0.1
    # a study without a recipe keeps its id (resuming studies written before recipes existed)
    plain = load_study("digits")
    assert plain.recipe is None and study_id(plain) == study_id(load_study("digits", differences=["x"]))
    with pytest.raises(Exception, match="Did you mean 'paper-cifar'"):
        load_study("digits", recipe="paper-cifr")


def test_a_cifar_study_with_a_paper_preset_and_another_recipe_is_warned_about():
    from unlearnbench.study import load_study

    with pytest.warns(UserWarning, match="recipe 'fast-cifar'"):
        load_study("cifar10-salun", recipe="fast-cifar")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_study("cifar10-salun")  # paper-cifar: no warning
        load_study("cifar10-salun", recipe="fast-cifar",
                   differences=["Original and Retrain use recipe fast-cifar (40 epochs, label smoothing)."])


def test_paper_retrain_is_the_papers_retrain():
    """Issue #23: main_forget.py --unlearn retrain --unlearn_epochs 160 --unlearn_lr 0.1 — fresh
    init, SGD 0.1 (momentum 0.9, wd 5e-4), MultiStepLR(91, 136, gamma 0.1) stepped per epoch, the
    last epoch kept. The lr of every step equals torch's MultiStepLR stepped once per epoch."""
    import torch

    from unlearnbench.core.recipes import RECIPES
    from unlearnbench.core.train import lr_lambda

    r = RECIPES.get("paper-retrain")
    c = r.config()
    assert r.paper and (c.epochs, c.lr, c.momentum, c.weight_decay, c.batch_size) == (160, 0.1, 0.9, 5e-4, 256)
    assert not c.keep_best and c.schedule == "multistep" and c.gamma == 0.1 and c.label_smoothing == 0
    assert not c.nesterov and c.warmup == 0 and not c.amp
    for steps_per_epoch in (158, 87, 175):  # 40,500 / 22,500 / 45,000 images at batch 256
        f = lr_lambda(c, c.epochs * steps_per_epoch)
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[91, 136], gamma=0.1)
        for epoch in range(c.epochs):
            want = opt.param_groups[0]["lr"]
            got = {0.1 * f(epoch * steps_per_epoch + i) for i in range(steps_per_epoch)}
            assert len(got) == 1 and abs(got.pop() - want) < 1e-12, (steps_per_epoch, epoch)
            opt.step()
            ref.step()


def test_paper_studies_retrain_with_paper_retrain_and_train_originals_with_paper_cifar(tmp_path):
    from unlearnbench.study import load_study, plan_jobs

    for name in ("cifar10-salun", "cifar10-salun-class", "cifar10-sparse"):
        cfg = load_study(name)
        assert cfg.retrain_recipe == "paper-retrain"
        trains, _ = plan_jobs(cfg, tmp_path, None)
        originals = [t for t in trains if t.exclude is None]
        retrains = [t for t in trains if t.exclude is not None]
        assert retrains and all(t.recipe == "paper-retrain" for t in retrains)
        assert all((t.train["epochs"], t.train["keep_best"]) == (160, False) for t in retrains)
        assert all((t.train["epochs"], t.train["keep_best"]) == (182, True) for t in originals if not t.sparse)
        assert len({t.path for t in trains}) == len(trains)


def test_a_study_without_retrain_recipe_keeps_its_id_and_retrains_with_its_recipe(tmp_path):
    from unlearnbench.study import load_study, plan_jobs, study_id

    plain = load_study("digits")
    assert plain.retrain_recipe is None and study_id(plain) == study_id(load_study("digits", differences=["x"]))
    trains, _ = plan_jobs(plain, tmp_path, None)
    per_seed = {}
    for t in trains:
        if t.sparsity is None:
            per_seed.setdefault(t.train["seed"], set()).add(json.dumps(t.train, sort_keys=True, default=str))
    assert per_seed and all(len(v) == 1 for v in per_seed.values())
    own = load_study("digits", retrain_recipe="paper-digits")
    assert study_id(own) != study_id(plain)
    with pytest.raises(Exception, match="Did you mean 'paper-retrain'"):
        load_study("digits", retrain_recipe="paper-retrian")


def test_a_paper_study_retraining_with_another_recipe_is_warned_about():
    from unlearnbench.study import load_study

    with pytest.warns(UserWarning, match="retrain_recipe: paper-retrain"):
        load_study("cifar10-salun", retrain_recipe="paper-cifar")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("amp", [False, True])
@pytest.mark.parametrize("cpu_bf16_flag", [False, True])
@pytest.mark.parametrize("cpu_can", [False, True])
def test_precision_used_states_what_training_computes(monkeypatch, device, amp, cpu_bf16_flag, cpu_can):
    """The protocol line's precision must be what `fit` really autocasts to, for every combination
    (it once said bf16 for amp=False, cpu_bf16=True, which trains in fp32). The CPU rows read
    torch's own autocast state inside `core.train.autocast`; CUDA autocast cannot run here, so its
    rows check the documented rule (amp alone decides)."""
    import torch

    import unlearnbench.core.train as train_mod
    from unlearnbench.core.recipes import precision_used
    from unlearnbench.core.train import TrainConfig

    cfg = TrainConfig(amp=amp, cpu_bf16=cpu_bf16_flag, device="cpu")
    said = precision_used(cfg, f"{device}:test", cpu_can)
    if device == "cpu":
        monkeypatch.setattr(train_mod, "cpu_has_bf16", lambda: cpu_can)
        with train_mod.autocast(torch.device("cpu"), cfg.amp, cpu=cfg.cpu_bf16):
            real = torch.is_autocast_enabled("cpu")
    else:
        real = amp
    assert said == ("bf16 autocast" if real else "fp32")
