"""Fidelity of the platform's AutoAttack against pyautoattack (the faithful port of the original)."""

from __future__ import annotations

import warnings

import pytest
import torch

from unlearnbench.robust.aa.apgd import APGD, APGDT
from unlearnbench.robust.aa.fab import FABT
from unlearnbench.robust.aa.square import Square
from unlearnbench.robust.checks import RobustnessWarning
from unlearnbench.robust.evaluate import robust_accuracy
from unlearnbench.robust.threat import ThreatModel

pyaa = pytest.importorskip("pyautoattack")

# written out, not read from the engine: what the reference runs in each version
STAGE_NAMES = {"standard": ["apgd-ce", "apgd-t", "fab-t", "square"], "rand": ["apgd-ce", "apgd-dlr"]}


@pytest.mark.parametrize("norm,eps", [("Linf", 0.1), ("L2", 1.0)])
def test_stages_reproduce_the_reference_point_for_point(cnn, digits_points, norm, eps):
    """Same seed, same batches: the same adversarial images as pyautoattack, stage by stage,
    including when two reference batches are attacked together in one merged batch."""
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    x, y = digits_points[0][:40], digits_points[1][:40]
    ref = APGDAttack(cnn, n_iter=20, norm=norm, eps=eps, seed=1, loss="ce", device="cpu").perturb(x, y)
    mine, _ = APGD(cnn, norm=norm, eps=eps, steps=20, seed=1).perturb_chunks(x, y)
    assert torch.equal(ref, mine)

    ref_t = APGDAttack_targeted(cnn, n_iter=20, norm=norm, eps=eps, seed=1, device="cpu", n_target_classes=3)
    ref = torch.cat([ref_t.perturb(x[:15], y[:15]), ref_t.perturb(x[15:], y[15:])])
    mine, _ = APGDT(cnn, norm=norm, eps=eps, steps=20, seed=1, n_target_classes=3).perturb_chunks(x, y, [15, 25])
    assert torch.equal(ref, mine)

    ref = FABAttack_PT(cnn, norm=norm, n_restarts=1, n_iter=20, eps=eps, seed=1, device="cpu", targeted=True,
                       n_target_classes=3).perturb(x, y)
    assert torch.equal(ref, FABT(cnn, norm=norm, eps=eps, steps=20, n_target_classes=3).perturb(x, y))

    ref_s = SquareAttack(cnn, p_init=0.8, n_queries=150, eps=eps, norm=norm, n_restarts=1, seed=1, device="cpu",
                         resc_schedule=False)
    ref = torch.cat([ref_s.perturb(x[:15], y[:15]), ref_s.perturb(x[15:], y[15:])])
    for every in (1, 7):  # re-selecting the unbroken points every query or every 7 queries
        mine, _ = Square(cnn, norm=norm, eps=eps, n_queries=150, seed=1, compact_every=every).perturb_chunks(x, y, [15, 25])
        assert torch.equal(ref, mine)

    # Restarts continue each chunk's random stream, as the reference's do.
    ref_s = SquareAttack(cnn, p_init=0.8, n_queries=40, eps=eps / 2, norm=norm, n_restarts=2, seed=1, device="cpu",
                         resc_schedule=False)
    ref = torch.cat([ref_s.perturb(x[:15], y[:15]), ref_s.perturb(x[15:], y[15:])])
    mine, _ = Square(cnn, norm=norm, eps=eps / 2, n_queries=40, n_restarts=2, seed=1).perturb_chunks(x, y, [15, 25])
    assert torch.equal(ref, mine)


def test_merging_batches_does_not_change_the_result(cnn, digits_points, monkeypatch):
    x, y = digits_points[0][:48], digits_points[1][:48]
    cfg = {"apgd_steps": 10, "fab_steps": 10, "square_queries": 100, "chunk": 12}
    from unlearnbench.core.data import TensorSet

    tset = TensorSet((x * 255).round().to(torch.uint8), y, torch.arange(48))
    threat = ThreatModel("Linf", 0.1)
    one = robust_accuracy(cnn, tset, "autoattack", threat, config={**cfg, "max_batch": 12}, return_adv=True)
    merged = robust_accuracy(cnn, tset, "autoattack", threat, config={**cfg, "max_batch": 48}, return_adv=True)
    assert one.stages == merged.stages
    assert torch.equal(one.x_adv, merged.x_adv)

    # Out of GPU memory with several chunks together: the engine retries in halves, same result.
    from unlearnbench.robust.aa import engine

    real = engine._run_stage

    def tight(stage, x, y, sizes):
        if len(sizes) > 1:
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(stage, x, y, sizes)

    monkeypatch.setattr(engine, "_run_stage", tight)
    retried = robust_accuracy(cnn, tset, "autoattack", threat, config={**cfg, "max_batch": 48}, return_adv=True)
    assert torch.equal(one.x_adv, retried.x_adv)


def test_autoattack_matches_pyautoattack_at_the_full_budget(cnn, digits_splits):
    """Standard AutoAttack, original budget, 60 digits test images: the same robust points."""
    from pyautoattack import AutoAttack

    test = digits_splits.test
    tset = test.select(torch.arange(60))
    x, y = tset.x.float() / 255, tset.y
    eps = 0.11  # robust accuracy ~15-20 %: APGD-T matters, the later stages run on real points
    ref = AutoAttack(cnn, device="cpu", eps=eps, norm="Linf", seed=0, version="standard")
    ref.logger.disabled = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_ref, _ = ref.run_standard_evaluation(x, y, batch_size=60)
    with torch.no_grad():
        ref_robust = cnn(x_ref).argmax(1) == y
    res = robust_accuracy(cnn, tset, "autoattack", ThreatModel("Linf", eps), seed=0, batch_size=60)
    assert 0 < res.robust_acc < res.clean_acc, "pick an eps where robust accuracy is informative"
    assert abs(res.robust_acc - 100 * ref_robust.float().mean().item()) <= 1.0
    assert torch.equal(res.robust, ref_robust)  # exact agreement is expected on the same CPU
    assert list(res.stages) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    pgd = robust_accuracy(cnn, tset, "pgd", ThreatModel("Linf", eps), seed=0, config={"steps": 20})
    assert res.robust_acc <= pgd.robust_acc


def test_robust_result_and_metrics(cnn, digits_splits):
    test = digits_splits.test
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)  # a standard eval-mode cnn raises no flag
        res = robust_accuracy(cnn, test, "pgd", ThreatModel("Linf", 0.1), n=64, seed=5, config={"steps": 5},
                              return_adv=True)
    again = robust_accuracy(cnn, test, "pgd", ThreatModel("Linf", 0.1), n=64, seed=5, config={"steps": 5})
    assert res.n == 64 and res.robust_acc == again.robust_acc and torch.equal(res.idx, again.idx)
    assert res.robust_acc <= res.clean_acc
    assert res.stages["clean"] == round(res.clean_acc * 64 / 100)
    m = res.metrics("test")
    assert m["clean/test"] == res.clean_acc and m["robust/test/pgd"] == res.robust_acc
    assert res.x_adv.shape == (64, 1, 8, 8)


def test_chunks_are_the_references_250_points_whatever_the_batch_size(cnn, digits_points, monkeypatch):
    """The reference's random starts depend on its batch size (250 in its scripts and RobustBench);
    the evaluation batch size must not change AutoAttack's verdicts or images."""
    from unlearnbench.robust.aa import engine
    from unlearnbench.robust.attacks import run_attack
    from unlearnbench.robust.threat import AutoAttackConfig

    assert AutoAttackConfig().chunk == 250
    seen = []
    real = engine._groups
    monkeypatch.setattr(engine, "_groups", lambda idx, chunk, max_batch: seen.append(chunk) or real(idx, chunk, max_batch))
    x, y = digits_points[0][:40], digits_points[1][:40]
    cfg = {"apgd_steps": 5, "fab_steps": 3, "square_queries": 20, "n_target_classes": 2}
    threat = ThreatModel("Linf", 0.1)
    small = run_attack("autoattack", cnn, x, y, threat, cfg, batch_size=8)
    large = run_attack("autoattack", cnn, x, y, threat, cfg, batch_size=1024)
    assert set(seen) == {250}
    assert torch.equal(small.x_adv, large.x_adv) and torch.equal(small.robust, large.robust)
    assert small.stages["clean"] > small.stages["square"]  # the attack broke points: a real comparison


@pytest.mark.parametrize("attack,cfg", [("pgd", {"steps": 5}),
                                        ("autoattack", {"apgd_steps": 5, "fab_steps": 3, "square_queries": 20,
                                                        "n_target_classes": 2})])
def test_saved_adversarial_images_are_the_ones_judged(cnn, digits_splits, tmp_path, attack, cfg):
    """--save-adv: the saved images give the saved verdicts when judged again, and are the
    attack's own images, untouched wherever they were inside the threat model."""
    from unlearnbench.robust.attacks import run_attack
    from unlearnbench.robust.evaluate import save_adversarial

    test = digits_splits.test
    threat = ThreatModel("Linf", 0.1)
    res = robust_accuracy(cnn, test, attack, threat, n=40, seed=2, config=cfg, return_adv=True)
    saved = torch.load(save_adversarial(tmp_path / "adv.pt", res), weights_only=True)
    x = test.select(res.positions).x.float() / 255
    with torch.no_grad():
        clean = cnn(x).argmax(1) == saved["y"]
        judged = clean & (cnn(saved["x_adv"]).argmax(1) == saved["y"])
    assert torch.equal(judged, saved["robust"])
    assert saved["robust_acc"] == pytest.approx(100 * judged.float().mean().item())
    raw = run_attack(attack, cnn, x, saved["y"], threat, cfg, seed=2, raw=True).x_adv
    delta = (raw - x).flatten(1).abs().max(1)[0]
    inside = (delta <= threat.eps) & (raw.flatten(1).min(1)[0] >= 0) & (raw.flatten(1).max(1)[0] <= 1)
    assert torch.equal(saved["x_adv"][inside], raw[inside])


def test_reference_batch_and_seed_facts_the_docs_rely_on(monkeypatch):
    """Issue #23: 250 is the reference's default ``bs`` (not a RobustBench constant), and without a
    seed the reference seeds every batch from the clock, so parity needs a fixed seed and bs 250."""
    import inspect
    import time
    from pathlib import Path

    from pyautoattack import AutoAttack

    from unlearnbench.robust.threat import AutoAttackConfig

    assert inspect.signature(AutoAttack.run_standard_evaluation).parameters["batch_size"].default == 250
    assert AutoAttackConfig().chunk == 250
    ref = AutoAttack(torch.nn.Identity(), eps=0.1)
    monkeypatch.setattr(time, "time", lambda: 1234.5)
    assert ref.seed is None and ref.get_seed() == 1234.5  # the clock, when no seed is given
    assert AutoAttack(torch.nn.Identity(), eps=0.1, seed=7).get_seed() == 7
    doc = " ".join((Path(__file__).parents[2] / "docs" / "robustness.md").read_text().split())
    assert "not a RobustBench constant" in doc and "from the clock" in doc
    assert "reference's batch size in its scripts and in RobustBench" not in doc


def _reference_autoattack(model, threat, cfg, monkeypatch):
    """pyautoattack's own cascade (``run_standard_evaluation``) with the small budget of ``cfg``: its
    attack objects rebuilt as ``_set_version`` would build them (APGD derives its step schedule
    from ``n_iter`` at construction), and its robust count recorded after every attack."""
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack
    from pyautoattack.state import EvaluationState

    common = dict(eps=threat.eps, norm=threat.norm, seed=cfg["seed"], device="cpu")
    ref = AutoAttack(model, version=cfg["version"], **common)
    ref.logger.disabled = True
    eot = cfg.get("eot_iter", 20) if cfg["version"] == "rand" else 1
    ref.apgd = APGDAttack(model, n_restarts=1, n_iter=cfg["apgd_steps"], eot_iter=eot, rho=0.75, **common)
    ref.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_iter=cfg["apgd_steps"], eot_iter=1, rho=0.75,
                                            n_target_classes=cfg["n_target_classes"], **common)
    ref.fab = FABAttack_PT(model, n_restarts=1, n_iter=cfg["fab_steps"], n_target_classes=cfg["n_target_classes"],
                           **common)
    ref.square = SquareAttack(model, p_init=0.8, n_queries=cfg["square_queries"], n_restarts=1, resc_schedule=False,
                              **common)
    counts: dict[str, int] = {}
    real_add = EvaluationState.add_run_attack

    def record(state, attack):
        counts[attack] = int(state.robust_flags.sum())
        return real_add(state, attack)

    monkeypatch.setattr(EvaluationState, "add_run_attack", record)
    return ref, counts


@pytest.mark.parametrize("version,norm,eps", [("standard", "Linf", 0.11), ("standard", "L2", 0.7), ("rand", "Linf", 0.11)])
def test_engine_matches_the_pyautoattack_cascade_point_for_point_at_a_small_budget(cnn, digits_points, monkeypatch,
                                                                                  version, norm, eps):
    """The engine's cascade (which points each stage attacks, in which batches, from which
    image; which verdicts and images it keeps; clean mistakes counted non-robust) against
    pyautoattack's ``run_standard_evaluation`` at a budget small enough for every test run:
    several reference batches (chunk 12), two of them attacked together (max_batch 24), one
    wrong label; the same robust points after every stage and the same adversarial images."""
    from unlearnbench.robust.aa.engine import run_autoattack
    from unlearnbench.robust.threat import AutoAttackConfig

    x, y = digits_points[0][:40].clone(), digits_points[1][:40].clone()
    y[3] = (y[3] + 1) % 10  # a clean mistake: non-robust from the start, never attacked
    threat = ThreatModel(norm, eps)
    small = {"apgd_steps": 8, "fab_steps": 8, "square_queries": 60, "n_target_classes": 3, "seed": 0,
             "version": version, "eot_iter": 2}
    ref, ref_counts = _reference_autoattack(cnn, threat, small, monkeypatch)
    cfg = AutoAttackConfig(**small, chunk=12, max_batch=24, checks=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_ref, _ = ref.run_standard_evaluation(x, y, batch_size=12)
        out = run_autoattack(cnn, x, y, threat, cfg)
        if version == "standard" and norm == "Linf":
            # out of GPU memory with two chunks together: retried chunk by chunk, the same result
            from unlearnbench.robust.aa import engine

            real, halves = engine._run_stage, []

            def tight(stage, xs, ys, sizes):
                if len(sizes) > 1:
                    raise torch.cuda.OutOfMemoryError("simulated")
                halves.append(len(xs))
                return real(stage, xs, ys, sizes)

            monkeypatch.setattr(engine, "_run_stage", tight)
            retried = run_autoattack(cnn, x, y, threat, cfg)
            monkeypatch.undo()
            assert halves and max(halves) <= 12
            assert torch.equal(retried.x_adv, out.x_adv) and retried.stages == out.stages
    with torch.no_grad():
        ref_clean = cnn(x).argmax(1) == y
        ref_robust = cnn(x_ref).argmax(1) == y
    assert not ref_clean[3] and not out.robust[3] and not out.clean[3]
    assert torch.equal(out.clean, ref_clean)
    assert torch.equal(out.robust, ref_robust)
    assert out.stages == {"clean": int(ref_clean.sum()), **ref_counts}
    assert list(out.stages) == ["clean", *STAGE_NAMES[version]]
    counts = list(out.stages.values())
    assert counts[-1] < counts[1] < counts[0], "every case must leave points to the later stages and break some"
    # the reference's images, up to float rounding: a batch of two chunks rounds a few pixels
    # differently (1e-7), and the engine fits rows outside the threat model by rounding only
    torch.testing.assert_close(out.x_adv, x_ref, atol=1e-6, rtol=0)
    assert torch.equal(out.x_adv[~ref_clean], x[~ref_clean]) and torch.equal(out.x_adv[ref_robust], x[ref_robust])


@pytest.mark.parametrize("version", ["standard", "rand"])
def test_only_the_rand_version_averages_eot_samples(cnn, digits_points, monkeypatch, version):
    """``rand`` (for randomised models) averages ``eot_iter`` gradient samples per APGD step; standard
    AutoAttack takes one. On a deterministic model both give the same images, so the parity tests
    cannot see it: read it off the stages the engine builds."""
    from unlearnbench.robust.aa import engine
    from unlearnbench.robust.threat import AutoAttackConfig

    built = []
    real = engine._build_stage
    monkeypatch.setattr(engine, "_build_stage", lambda *a: built.append(real(*a)) or built[-1])
    x, y = digits_points[0][:4], digits_points[1][:4]
    cfg = AutoAttackConfig(version=version, apgd_steps=2, fab_steps=2, square_queries=2, n_target_classes=2,
                           eot_iter=3, checks=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine.run_autoattack(cnn, x, y, ThreatModel("Linf", 1e-3), cfg)
    # the cascade's attacks in order (in the parity tests FAB-T and Square break no point, so a
    # stage built as the wrong attack would go unseen there)
    kinds = {"standard": [APGD, APGDT, FABT, Square], "rand": [APGD, APGD]}[version]
    assert [type(s) for s in built] == kinds
    assert version == "standard" or [s.loss for s in built] == ["ce", "dlr"]
    apgd = [s for s in built if isinstance(s, (APGD, APGDT))]
    assert len(apgd) == 2
    assert [s.eot_iter for s in apgd] == ([3, 3] if version == "rand" else [1, 1])


@pytest.mark.parametrize(("n", "chunk", "max_batch", "groups"), [
    (100, 10, 30, [[10, 10, 10], [10, 10, 10], [10, 10, 10], [10]]),  # a group may fill max_batch exactly
    (95, 10, 35, [[10, 10, 10], [10, 10, 10], [10, 10, 10, 5]]),  # the short last chunk still fits
    (25, 10, 10, [[10], [10], [5]]),
    (7, 10, 40, [[7]]),
])
def test_groups_pack_whole_chunks_up_to_max_batch(n, chunk, max_batch, groups):
    """Robust points split into the reference's chunks in order, then as many whole chunks per
    group as fit in max_batch (the memory bound), never a chunk split across groups."""
    from unlearnbench.robust.aa.engine import _groups

    idx = torch.arange(n) * 3  # robust indices need not be contiguous
    out = _groups(idx, chunk, max_batch)
    assert [sizes for _, sizes in out] == groups
    assert torch.equal(torch.cat([g for g, _ in out]), idx)
