"""Long work shows progress: AutoAttack reports per sub-attack and per chunk, with an ETA learnt
from the stages already run (StagedEta, checked on hand-computed numbers)."""

from __future__ import annotations

import io
import re

import pytest
import torch

from unlearnbench.core import progress
from unlearnbench.core.progress import StagedEta


def test_staged_eta_learns_from_finished_stages():
    eta = StagedEta({"a": 1.0, "b": 9.0, "c": 3.0})
    assert eta.remaining("a", 0, 100, 0.0, ["b"], 100) is None  # nothing measured yet
    eta.finish("a", 100, 10.0)  # 0.1 s per unit
    # b not started: 0.1 * 9 * 50 for b, then 0.1 * 3 * 40 for c on the 40 points still robust
    assert eta.remaining("b", 0, 50, 0.0, ["c"], 40) == pytest.approx(45.0 + 12.0)
    assert eta.remaining("b", 0, 50, 5.0, [], 40) == pytest.approx(40.0)  # 5 s already spent in b
    # half of b done in 30 s: the rate blends a (10 s / 100 units) and b (30 s / 225 units)
    rate = 40.0 / 325.0
    assert eta.remaining("b", 25, 50, 30.0, ["c"], 40) == pytest.approx(rate * (9 * 25 + 3 * 40))
    # the naive per-stage extrapolation before b starts says 0 s left for b: the learnt one does not
    assert eta.remaining("b", 0, 50, 0.0, [], 50) > 0


def test_autoattack_prints_every_stage_and_chunk_with_an_eta(monkeypatch):
    from unlearnbench.robust.aa.engine import run_autoattack
    from unlearnbench.robust.threat import AutoAttackConfig, ThreatModel

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    x = torch.rand(24, 1, 8, 8)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point clean-correct, so every stage has points to attack
    stream = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", stream)
    progress.set_enabled(True)
    progress.set_line_mode(True)
    try:
        cfg = AutoAttackConfig(apgd_steps=3, fab_steps=3, square_queries=30, n_target_classes=3, chunk=8,
                               max_batch=8, checks=False)
        run_autoattack(model, x, y, ThreatModel(norm="Linf", eps=0.001), cfg)
    finally:
        progress.set_enabled(False)
        progress.set_line_mode(None)
    lines = stream.getvalue().splitlines()
    for stage in ("apgd-ce", "apgd-t", "fab-t", "square"):
        chunks = [ln for ln in lines if ln.startswith(f"autoattack {stage}") and "points" in ln]
        assert len(chunks) >= 3, (stage, lines)  # 24 points in chunks of 8: a line per chunk
    later = [ln for ln in lines if ln.startswith("autoattack apgd-t")]
    assert later and all(re.search(r"ETA \d+:\d\d", ln) for ln in later), later  # learnt from APGD-CE
    assert any(ln.startswith("autoattack (standard): after apgd-ce") and "ETA" in ln for ln in lines), lines
