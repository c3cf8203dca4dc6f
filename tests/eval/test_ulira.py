"""The U-LiRA protocol (Hayes et al., 2024): target pools, per-example likelihood ratios,
accuracy / AUC over targets with 95 % intervals; and the two-model diagnostic."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import SHADOW_CFG

from unlearnbench.core.data import prepare
from unlearnbench.core.errors import ConfigError
from unlearnbench.core.train import TrainConfig
from unlearnbench.eval.shadow import ShadowPool, mean_interval, shadow_seed, ulira_masks, ulira_targets
from unlearnbench.eval.shadow_train import train_pool


def _synthetic_pool(n: int, targets: int, c: int, delta: float, seed: int) -> ShadowPool:
    """phi = example offset + model offset + noise; unlearned models keep ``delta`` more
    confidence on the examples of their own forget set (delta = 0: the null, retrain vs retrain)."""
    rng = np.random.default_rng(seed)
    masks = ulira_masks(n, targets, c, seed)
    mu = rng.normal(0, 3, c)
    u = mu + rng.normal(0, 0.5, (n, 1)) + rng.normal(0, 1, (n, c)) + delta * masks
    r = mu + rng.normal(0, 0.5, (n, 1)) + rng.normal(0, 1, (n, c))
    manifest = {"kind": "ulira", "targets": targets, "shadows": [{"index": j} for j in range(n)]}
    return ShadowPool(Path("."), manifest, phi_unlearned=u, phi_retrained=r, forget_masks=masks)


def test_masks_split_shadows_and_targets_each_balanced():
    m = ulira_masks(10, 4, 50, seed=0)
    assert m.shape == (10, 50)
    assert (m[:6].sum(0) == 3).all() and (m[6:].sum(0) == 2).all()


def test_mean_interval_known_values():
    mean, lo, hi = mean_interval(np.array([0.4, 0.6]))
    # t(0.975, 1) = 12.706; sd = 0.1414; half = 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert mean == pytest.approx(0.5) and hi - mean == pytest.approx(1.2706, abs=1e-3) and lo == pytest.approx(-0.7706, abs=1e-3)
    # one value: its mean is known, its interval is not; none (or only NaNs): nothing is known
    one = mean_interval(np.array([0.5, np.nan]))
    assert one[0] == 0.5 and np.isnan(one[1]) and np.isnan(one[2])
    assert all(np.isnan(v) for v in mean_interval(np.array([np.nan])))


def test_perfect_separation_by_hand():
    pool = _synthetic_pool(8, 4, 20, delta=50.0, seed=0)
    res = ulira_targets(pool)
    assert res.n_targets == 8 and (res.acc == 1).all() and (res.auc == 1).all()
    assert res.counts() == {"n_targets": 8, "n_members": 40, "n_nonmembers": 40}  # 4 pairs x 10 forget examples


def test_null_intervals_cover_half_and_a_signal_is_detected():
    """50 seeded null pools (unlearned = another retrain): the 95 % intervals contain 0.5 about 95 %
    of the time (the interval is calibrated, not just wide); a real per-example signal is detected
    with intervals above 0.5."""
    covered_acc = covered_auc = 0
    for seed in range(50):
        v = ulira_targets(_synthetic_pool(16, 8, 60, delta=0.0, seed=seed)).values()
        covered_acc += v["acc_lo"] <= 0.5 <= v["acc_hi"]
        covered_auc += v["auc_lo"] <= 0.5 <= v["auc_hi"]
    assert covered_acc >= 42 and covered_auc >= 42, (covered_acc, covered_auc)
    v = ulira_targets(_synthetic_pool(16, 8, 60, delta=1.5, seed=0)).values()
    assert v["acc_lo"] > 0.55 and v["auc_lo"] > 0.6


def test_ulira_pool_errors(tmp_path):
    cfg = TrainConfig(epochs=1, device="cpu")
    with pytest.raises(ConfigError, match="example-level"):
        train_pool(tmp_path / "a", dataset="digits", model="mlp", n=4, config=cfg, ulira_method="finetune", forget="class:3")
    with pytest.raises(ConfigError, match="target pairs"):
        train_pool(tmp_path / "b", dataset="digits", model="mlp", n=4, config=cfg, ulira_method="finetune",
                   forget="random:0.1", targets=3)
    with pytest.raises(ConfigError, match=r"--n 10 pairs needs 2 to 8 target pairs \(--targets\), got 9"):
        train_pool(tmp_path / "b", dataset="digits", model="mlp", n=10, config=cfg, ulira_method="finetune",
                   forget="random:0.1", targets=9)
    with pytest.raises(ConfigError, match="only apply to U-LiRA"):
        train_pool(tmp_path / "c", dataset="digits", model="mlp", n=4, config=cfg, targets=2)


CFG = TrainConfig(**{**SHADOW_CFG, "epochs": 12})
FT = {"epochs": 2}  # fine-tuning on the retain set for 2 epochs: a weak unlearner


@pytest.fixture(scope="module")
def ulira_pools(tmp_path_factory):
    """Two digits U-LiRA pools of 8 MLP pairs (4 shadow, 4 target pairs; each pair forgets half
    of the 243 candidates of random:0.2): finetune, and the null control (the retrain method)."""
    root = tmp_path_factory.mktemp("ulira")
    kw = dict(dataset="digits", model="mlp", n=8, config=CFG, forget="random:0.2", seed=0)
    return {
        "finetune": train_pool(root / "ft", ulira_method="finetune", method_config=FT, **kw),
        "retrain": train_pool(root / "rt", ulira_method="retrain", **kw),
    }


def test_ulira_protocol_on_digits(ulira_pools):
    """Retrains scored as targets: accuracy and AUC intervals contain 0.5. Finetune: above, with
    intervals excluding 0.5. Both are the pools' recorded hold-out results."""
    null = ulira_pools["retrain"].manifest["holdout"]["ulira"]
    ft = ulira_pools["finetune"].manifest["holdout"]["ulira"]
    for v in (null, ft):
        assert v["n_targets"] == 8 and v["n_members"] == v["n_nonmembers"] > 200
    assert null["acc_lo"] <= 0.5 <= null["acc_hi"] and null["auc_lo"] <= 0.5 <= null["auc_hi"], null
    assert null["auc_fit_lo"] <= 0.5 <= null["auc_fit_hi"] and null["auc_fit_lo"] < null["auc"] < null["auc_fit_hi"]
    assert ft["acc_lo"] > 0.5 and ft["auc_lo"] > 0.5 and ft["auc"] > null["auc"] + 0.05, ft
    # the recorded result is what the pool's signals give
    assert ulira_targets(ulira_pools["finetune"]).values()["auc"] == pytest.approx(ft["auc"])
    pool = ulira_pools["finetune"]
    m = pool.manifest
    assert pool.forget_masks.shape == pool.phi_unlearned.shape == (8, 243)
    assert (pool.forget_masks[:4].sum(0) == 2).all() and (pool.forget_masks[4:].sum(0) == 2).all()
    assert all(s["forget_acc"] >= s["retrained_forget_acc"] for s in m["shadows"])  # finetune keeps more
    # retrains are independent draws: no retrained model is the original's twin
    seeds = [(s["seed"]) for s in m["shadows"]]
    assert len(set(seeds)) == 8


def test_evaluate_with_a_ulira_pool_through_the_cli(ulira_pools, tmp_path):
    """``evaluate --shadow-pool`` on a target pair of the pool: the protocol's values, the
    model's own share called "unlearned", and the two-model diagnostic, with counts."""
    from typer.testing import CliRunner

    from unlearnbench.cli import app

    pool = ulira_pools["finetune"].path
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, [
        "evaluate", "-c", str(pool / "shadow_007_unlearned.pt"), "-r", str(pool / "shadow_007_retrained.pt"),
        "--shadow-pool", str(pool), "--metrics", "ulira,two_model_ulira", "--no-track", "--json", str(out), "-q",
    ])
    assert res.exit_code == 0, res.output
    saved = json.loads(out.read_text())
    values, counts = saved["values"], saved["counts"]
    hold = ulira_pools["finetune"].manifest["holdout"]["ulira"]
    assert values["mia/ulira/targets/auc"] == pytest.approx(hold["auc"])
    assert values["mia/ulira/targets/auc_fit_lo"] == pytest.approx(hold["auc_fit_lo"]) and hold["n_boot"] == 200
    assert counts["mia/ulira/targets/n_targets"] == 8
    assert 0 <= values["mia/ulira/forget/called_unlearned"] <= 1
    assert counts["mia/ulira/forget/n_examples"] == counts["mia/ulira/reference/n_examples"] == 243  # all candidates
    # the finetuned target keeps its forget set: the attack calls more of it "unlearned" than of the retrain
    assert values["mia/ulira/forget/called_unlearned"] > values["mia/ulira/reference/called_unlearned"]
    assert counts["mia/two_model_ulira/forget/n_members"] == counts["mia/two_model_ulira/forget/n_nonmembers"] == 243
    assert "mia/two_model_ulira/forget/tpr_at_fpr_0.001" not in values  # 243 non-members: undefined
    assert "mia/two_model_ulira/forget/tpr_at_fpr_0.001" in saved["undefined"]
    assert "mia/two_model_ulira/forget/tpr_at_fpr_0.01" in values
    info = CliRunner().invoke(app, ["shadow", "info", str(pool)])
    assert info.exit_code == 0 and "U-LiRA over 8 targets" in " ".join(info.output.split())
    assert "shadow fit's variance" in " ".join(info.output.split())


def test_the_null_control_is_exactly_symmetric():
    """With ``--ulira-method retrain`` the "unlearned" and the retrained model come from one
    procedure: swapping a pair's two seeds swaps its two models bit for bit (and the seeds are
    used: the two models differ)."""
    from unlearnbench.core.config import to_dict
    from unlearnbench.eval.shadow_train import ulira_shadow_job

    cfg = TrainConfig(**{**SHADOW_CFG, "epochs": 2})
    base = dict(dataset="digits", model="mlp", split_seed=0, val_fraction=0.1, data_root=None,
                train_config=to_dict(cfg), index=0, seed=5, forget="random:0.2", method="retrain",
                method_config={}, forget_mask=ulira_masks(4, 2, 243, 0)[0])
    a = ulira_shadow_job({**base, "unlearn_seed": 11, "retrain_seed": 22})
    b = ulira_shadow_job({**base, "unlearn_seed": 22, "retrain_seed": 11})
    assert np.array_equal(a["phi_unlearned"], b["phi_retrained"]) and np.array_equal(a["phi_retrained"], b["phi_unlearned"])
    assert not np.array_equal(a["phi_unlearned"], a["phi_retrained"])


def test_rank_auc_equals_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    from unlearnbench.eval.shadow import _auc

    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, neg = rng.integers(0, 6, 30).astype(float), rng.integers(0, 6, 25).astype(float)  # many ties
        want = roc_auc_score(np.r_[np.ones(30), np.zeros(25)], np.r_[pos, neg])
        assert _auc(pos, neg) == pytest.approx(want, abs=1e-12)


def test_shadow_bootstrap_interval_includes_the_fit_and_is_calibrated_on_the_null():
    """Issue #23: method-level claims need the shadow fit's variance. ``bootstrap=B`` resamples the
    shadow pairs (refit) and the target pairs; under the null it covers 0.5 in most pools, and a
    real signal is still detected."""
    covered, wider = 0, 0
    for seed in range(12):
        res = ulira_targets(_synthetic_pool(16, 8, 60, delta=0.0, seed=seed), bootstrap=60, seed=seed)
        v = res.values()
        assert v["n_boot"] == 60 and v["auc_fit_lo"] < v["auc"] < v["auc_fit_hi"]
        covered += v["auc_fit_lo"] <= 0.5 <= v["auc_fit_hi"]
        wider += (v["auc_fit_hi"] - v["auc_fit_lo"]) > 0.8 * (v["auc_hi"] - v["auc_lo"])
    assert covered >= 11 and wider >= 9, (covered, wider)
    v = ulira_targets(_synthetic_pool(16, 8, 60, delta=1.5, seed=0), bootstrap=60).values()
    assert v["auc_fit_lo"] > 0.55 and v["acc_fit_lo"] > 0.52
    # without bootstrap the values are the conditional intervals only, unchanged
    plain = ulira_targets(_synthetic_pool(16, 8, 60, delta=1.5, seed=0)).values()
    assert "auc_fit_lo" not in plain and plain["auc"] == pytest.approx(v["auc"])


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_shadow_bootstrap_is_the_central_percentile_interval_of_its_draws(level):
    # The same draws rebuilt here (same seed, same resampling order) give the interval by hand:
    # the (1 - level)/2 and (1 + level)/2 quantiles, numpy's default (linear) percentiles.
    from unlearnbench.eval import shadow

    pool = _synthetic_pool(16, 8, 60, delta=1.0, seed=4)
    u, r, masks = pool.phi_unlearned, pool.phi_retrained, pool.forget_masks
    sh, tg = np.arange(8), np.arange(8, 16)
    got = shadow.shadow_bootstrap(u, r, masks, sh, tg, "auto", 40, seed=7, level=level)
    rng = np.random.default_rng(7)
    acc, auc = [], []
    for _ in range(40):
        a, c, _, _ = shadow._target_scores(u, r, masks, rng.choice(sh, 8, replace=True),
                                           rng.choice(tg, 8, replace=True), "auto")
        acc.append(np.nanmean(a))
        auc.append(np.nanmean(c))
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    assert got["n_boot"] == 40
    assert got["acc_fit"] == pytest.approx(tuple(np.nanpercentile(acc, q)), abs=1e-12)
    assert got["auc_fit"] == pytest.approx(tuple(np.nanpercentile(auc, q)), abs=1e-12)
    assert got["auc_fit"][0] < got["auc_fit"][1]


@pytest.mark.parametrize("method", ["finetune", "retrain"])
def test_a_pair_job_by_hand(method, monkeypatch):
    """One U-LiRA pair with training and unlearning replaced by stubs: the original trains on the
    whole training split (the null control ``retrain`` trains none), the method and the retrain
    forget exactly the pair's half of the candidates and keep the rest of the training split, the
    method gets the pool's method config (the retrain recipe too, when it is retrain), and
    ``seconds`` is original + unlearning + retraining with ``unlearn_seconds`` the unlearning alone."""
    from types import SimpleNamespace

    import unlearnbench.eval.shadow_train as st
    import unlearnbench.unlearn as unlearn

    fits, ran = [], []

    def fake_fit(model, train, val, info, cfg, description=""):
        fits.append((len(train), cfg.seed))
        return SimpleNamespace(seconds=1.5)

    def fake_run(name, model, data, config, *, seed, device):
        ran.append((name, set(data.forget.idx.tolist()), set(data.retain.idx.tolist()), dict(config), seed))
        return SimpleNamespace(model=model, seconds=(2.25, 4.0)[len(ran) - 1])  # the method's, then retrain's

    monkeypatch.setattr(st, "fit", fake_fit)
    monkeypatch.setattr(unlearn, "run", fake_run)
    train_config = {"epochs": 3, "lr": 0.07, "device": "cpu"}
    spec = {"dataset": "digits", "model": "mlp", "split_seed": 0, "val_fraction": 0.1, "data_root": None,
            "train_config": train_config, "index": 0, "seed": 1, "forget": "random:0.05",
            "method": method, "method_config": {"epochs": 2}, "unlearn_seed": 2, "retrain_seed": 3}
    splits, data = prepare("digits", "random:0.05", split_seed=0)
    in_f = np.arange(len(data.forget)) % 2 == 0
    spec["forget_mask"] = in_f.tolist()
    out = st.ulira_shadow_job(spec)
    forgotten = set(data.forget.idx[torch.from_numpy(in_f)].tolist())
    kept = set(splits.train.idx.tolist()) - forgotten
    recipe = {"epochs": 3, "lr": 0.07}  # the retrain method's keys of the pool's training config
    assert fits == ([] if method == "retrain" else [(len(splits.train), 1)])
    assert [r[0] for r in ran] == [method, "retrain"] and [r[4] for r in ran] == [2, 3]
    assert all(r[1] == forgotten and r[2] == kept for r in ran)
    assert {k: ran[0][3][k] for k in ran[0][3] if k in recipe} == (
        {**recipe, "epochs": 2} if method == "retrain" else {"epochs": 2})
    assert {k: ran[1][3].get(k) for k in recipe} == recipe
    assert out["forget_mask"].tolist() == in_f.tolist() and out["phi_unlearned"].shape == (len(data.forget),)
    t_orig = 0.0 if method == "retrain" else 1.5
    assert out["unlearn_seconds"] == 2.25
    assert out["seconds"] == pytest.approx(t_orig + 2.25 + 4.0)


def _ulira_metric_setup(constructed, reference_phi=None):
    """Constructed data (4 forget candidates) and a U-LiRA pool whose per-example Gaussians are
    N(1, sd) for unlearned and N(-1, sd) for retrained models (mirror images: the log likelihood
    ratio is exactly 0 at phi = 0, and about 2 phi / sd^2 near it)."""
    import torch
    from eval_helpers import LookupModel, binary_logits

    def logits(phi):
        return binary_logits(torch.sigmoid(torch.tensor(phi, dtype=torch.float64)).tolist())

    phi_model = [0.25, -0.25, 0.0, 3.0]  # LLR about 0.5, -0.5, exactly 0, 6: called unlearned 1, 0, 0, 1
    model, data = constructed(logits(phi_model), logits([1.0] * 3), logits([1.0] * 2))
    n, targets = 8, 4
    masks = ulira_masks(n, targets, 4, seed=0)
    u = np.ones((n, 4))
    for i in range(4):
        u[masks[:, i], i] += np.resize([1.0, -1.0], masks[:, i].sum())
    manifest = {"kind": "ulira", "dataset": data.info.name, "targets": targets, "forget": "random:0.1",
                "split_seed": 0, "val_fraction": 0.1, "shadows": [{"index": j} for j in range(n)],
                "population": {"train_idx": np.r_[data.forget.idx.numpy(), data.retain.idx.numpy()].tolist(),
                               "test_idx": data.test.idx.numpy().tolist(), "forget_idx": data.forget.idx.numpy().tolist()},
                "holdout": {"ulira": {"acc_fit_lo": 0.1, "acc_fit_hi": 0.9, "auc_fit_lo": 0.2, "auc_fit_hi": 0.8,
                                      "n_boot": 200}}}
    pool = ShadowPool(Path("."), manifest, phi_unlearned=u, phi_retrained=-u, forget_masks=masks)
    ref = None
    if reference_phi is not None:
        ref_model, _ = constructed(logits(reference_phi), logits([1.0] * 3), logits([1.0] * 2))
        ref = LookupModel(ref_model.table).eval()
    return model, data, pool, ref


def test_ulira_metric_by_construction(constructed):
    """ulira: the share of forget examples with a positive log likelihood ratio (a tie at 0 is
    'retrained'), for the model and its reference; the protocol's values with the pool's recorded
    two-stage interval, which belongs to the default variance mode only."""
    from unlearnbench.eval.engine import Evaluator

    model, data, pool, ref = _ulira_metric_setup(constructed, reference_phi=[3.0, 3.0, 3.0, -3.0])
    r = Evaluator(metrics=["ulira"], shadow_pool=pool).evaluate(model, data, reference=ref)
    assert r["mia/ulira/forget/called_unlearned"] == 0.5 and r.counts["mia/ulira/forget/n_examples"] == 4
    assert r["mia/ulira/reference/called_unlearned"] == 0.75 and r.counts["mia/ulira/reference/n_examples"] == 4
    expected = pool.targets().values()
    assert {k: r[f"mia/ulira/targets/{k}"] for k in expected} == pytest.approx(expected, nan_ok=True)
    assert all(r.counts[f"mia/ulira/targets/{k}"] == v for k, v in pool.targets().counts().items())
    assert (r["mia/ulira/targets/auc_fit_lo"], r["mia/ulira/targets/acc_fit_hi"]) == (0.2, 0.9)
    assert r.counts["mia/ulira/targets/n_boot"] == 200
    for variance in ("global", "per_example"):  # the recorded bootstrap was drawn with "auto"
        other = Evaluator(metrics=["ulira"], shadow_pool=pool, lira_variance=variance).evaluate(model, data)
        assert not any("_fit_" in k for k in other.values) and "mia/ulira/targets/n_boot" not in other.counts
    # a reference given as values (another run's report) with U-LiRA numbers: they describe the pool, no gap
    r = Evaluator(metrics=["ulira", "gap"], shadow_pool=pool).evaluate(
        model, data, reference={"mia/ulira/forget/called_unlearned": 0.25, "ua": 1.0})
    assert not any(k.startswith("gap/mia/ulira") for k in r.values)


def test_two_model_ulira_metric_by_construction(constructed):
    """two_model_ulira: the model's forget examples (members) against the reference's (non-members),
    scored by the same log likelihood ratio."""
    from unlearnbench.eval.engine import Evaluator

    model, data, pool, ref = _ulira_metric_setup(constructed, reference_phi=[-3.0, -2.0, -1.0, -0.5])
    r = Evaluator(metrics=["two_model_ulira"], shadow_pool=pool).evaluate(model, data, reference=ref)
    assert r["mia/two_model_ulira/forget/auc"] == 1.0  # every model score above every reference score
    assert r.counts["mia/two_model_ulira/forget/n_members"] == r.counts["mia/two_model_ulira/forget/n_nonmembers"] == 4
    r = Evaluator(metrics=["two_model_ulira"], shadow_pool=pool).evaluate(ref, data, reference=model)
    assert r["mia/two_model_ulira/forget/auc"] == 0.0


def test_pool_driver_by_hand(tmp_path, monkeypatch):
    """The driver with stub pair jobs (no training): it records the pool's settings (method config
    included), one entry per pair with the job's seconds, the hold-out check's values and counts;
    a re-run with the same settings trains nothing, with other settings it names them."""
    import unlearnbench.eval.shadow_train as st
    from unlearnbench.core.errors import UserError
    from unlearnbench.core.models import create_model

    state = create_model("mlp", 10, 1, 8, (0.5,), (0.5,)).state_dict()
    calls = []

    def fake_job(spec):
        calls.append(spec["index"])
        mask = np.asarray(spec["forget_mask"], dtype=bool)
        rng = np.random.default_rng(spec["index"])
        return {"state_dict": state, "retrained_state_dict": state, "forget_mask": mask,
                "phi_unlearned": rng.normal(size=len(mask)) + mask, "phi_retrained": rng.normal(size=len(mask)),
                "seconds": 10.0 + spec["index"], "unlearn_seconds": 1.0, "forget_acc": 50.0, "retrained_forget_acc": 40.0}

    monkeypatch.setattr(st, "ulira_shadow_job", fake_job)
    kw = dict(dataset="digits", model="mlp", n=5, config=TrainConfig(epochs=1, device="cpu"), forget="random:0.05",
              ulira_method="finetune", method_config={"epochs": 2})  # the default pool seed is 0
    pool = train_pool(tmp_path / "p", **kw)
    m = pool.manifest
    assert m["seed"] == 0 and [s["seed"] for s in m["shadows"]] == [shadow_seed(0, j) for j in range(5)]
    # targets: n // 2 by default (2 of 5: fewer than the n - 2 allowed)
    assert sorted(calls) == [0, 1, 2, 3, 4] and m["method_config"] == {"epochs": 2} and m["targets"] == 2
    assert [s["seconds"] for s in m["shadows"]] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert [s["index"] for s in m["shadows"]] == [0, 1, 2, 3, 4]
    hold = m["holdout"]["ulira"]
    assert {"acc", "auc", "acc_fit_lo", "auc_fit_hi", "n_boot", "n_targets", "n_members", "n_nonmembers"} <= set(hold)
    assert train_pool(tmp_path / "p", **kw).n == 5 and len(calls) == 5  # finished: nothing trained again
    with pytest.raises(UserError, match=r"different settings \(method_config\)"):
        train_pool(tmp_path / "p", **{**kw, "method_config": {"epochs": 3}})
    # the smallest candidate set U-LiRA can split: two examples (its hold-out bootstrap draws are
    # often all-NaN there, which numpy warns about)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert train_pool(tmp_path / "two", **{**kw, "n": 4, "forget": "random:2"}).forget_masks.shape == (4, 2)


def test_pool_driver_refuses_a_corrupt_manifest(tmp_path):
    """One sentence, the decoder's reason cut at 80 characters, before any training."""
    cfg = TrainConfig(epochs=1, device="cpu")
    from unlearnbench.core.errors import UserError

    deep = "[" * 100_000
    try:
        json.loads(deep)
    except RecursionError as exc:
        reason = str(exc)
    assert len(reason) > 80
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "manifest.json").write_text(deep)
    with pytest.raises(UserError) as info:
        train_pool(tmp_path / "p", dataset="digits", model="mlp", n=2, config=cfg)
    assert f"is corrupt ({reason[:80]}); use another --out folder." in str(info.value)
    (tmp_path / "p" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="is not an unlearnbench shadow-pool manifest"):
        train_pool(tmp_path / "p", dataset="digits", model="mlp", n=2, config=cfg)
