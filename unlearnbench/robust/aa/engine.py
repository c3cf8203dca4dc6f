"""Standard AutoAttack (Croce & Hein, ICML 2020) composed from torchattacks attacks.

The cascade and budget are the original ones: APGD-CE (100 iterations) → APGD-T (top-9 target
classes × 100) → FAB-T (9 × 100) → Square (5000 queries, ``resc_schedule=False``); version
``rand`` runs APGD-CE and APGD-DLR with 20-sample EOT for randomised models. Every stage attacks
only the points that are still robust, each from the clean image; robust accuracy counts over all
points, so clean mistakes are non-robust.

Batching: the reference attacks the robust points in batches of ``bs`` (its default 250, which
RobustBench inherits by not passing ``bs``) and re-seeds its random generator at the start of
each batch (from the clock unless ``seed`` is given), so the
random starts, and with them the verdicts, depend on ``bs``. Here those batches are "chunks" of
``AutoAttackConfig.chunk`` points (250, whatever the evaluation batch size) that keep their own
random stream, and several chunks are attacked together (``max_batch`` points) to fill a GPU; the
results are the reference's at ``bs=250``, chunk for chunk.

Every stage's output is fitted to the threat model (``robust.projection.project_to_threat``: rows
outside by float rounding only) *before* it is judged, so the returned images are exactly the ones
the verdicts were computed on. Sanity counts follow the reference's ``checks.py``; points with a
zero gradient are counted once each, however many stages, restarts and targets saw them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from unlearnbench.core.progress import StagedEta, task
from unlearnbench.robust import checks
from unlearnbench.robust.threat import AutoAttackConfig, ThreatModel

log = logging.getLogger(__name__)

STAGES: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "rand": ("apgd-ce", "apgd-dlr"),
}


@dataclass
class AutoAttackOutcome:
    x_adv: torch.Tensor
    robust: torch.Tensor  # bool per point: correct on the clean image and never fooled
    clean: torch.Tensor  # bool per point: correct on the clean image
    stages: dict[str, int] = field(default_factory=dict)  # robust points after each stage
    stage_seconds: dict[str, float] = field(default_factory=dict)


def stage_weights(cfg: AutoAttackConfig, n_targets: int) -> dict[str, float]:
    """Prior cost per attacked point of each stage, in forward+backward passes: APGD's steps (x EOT
    samples), x targets for APGD-T and FAB-T (FAB's step needs two gradients), Square's queries
    (forward only, about a third of a forward+backward pass). Measured rates rescale them."""
    eot = cfg.eot_iter if cfg.version == "rand" else 1
    return {"apgd-ce": cfg.apgd_steps * eot, "apgd-dlr": cfg.apgd_steps * eot, "apgd-t": cfg.apgd_steps * n_targets,
            "fab-t": 2 * cfg.fab_steps * n_targets, "square": cfg.square_queries / 3}


def _build_stage(name: str, model: nn.Module, threat: ThreatModel, cfg: AutoAttackConfig, n_targets: int):
    from unlearnbench.robust.aa.apgd import APGD, APGDT
    from unlearnbench.robust.aa.fab import FABT
    from unlearnbench.robust.aa.square import Square

    common = dict(norm=threat.norm, eps=threat.eps, seed=cfg.seed)
    eot = cfg.eot_iter if cfg.version == "rand" else 1
    if name in ("apgd-ce", "apgd-dlr"):
        return APGD(model, steps=cfg.apgd_steps, n_restarts=1, loss=name[5:], eot_iter=eot, rho=0.75, **common)
    if name == "apgd-t":
        return APGDT(model, steps=cfg.apgd_steps, n_restarts=1, eot_iter=1, rho=0.75, n_target_classes=n_targets, **common)
    if name == "fab-t":
        # One restart: no random start, so chunking does not matter for FAB-T.
        return FABT(model, steps=cfg.fab_steps, n_restarts=1, n_target_classes=n_targets, alpha_max=0.1, eta=1.05,
                    beta=0.9, **common)
    if name == "square":
        return Square(model, n_queries=cfg.square_queries, n_restarts=1, p_init=0.8, resc_schedule=False, **common)
    raise ValueError(f"unknown AutoAttack stage {name!r}")


def _run_stage(stage, x: torch.Tensor, y: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The stage's images and, per row, whether its first (DLR) gradient was zero."""
    if hasattr(stage, "perturb_chunks"):
        stage.last_zero_grad = None
        adv, _ = stage.perturb_chunks(x, y, sizes)
        zero = getattr(stage, "last_zero_grad", None)
        if zero is not None:
            return adv, zero.to(x.device)
        return adv, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    return stage.perturb(x, y), torch.zeros(len(x), dtype=torch.bool, device=x.device)


def _attack_group(stage, x: torch.Tensor, y: torch.Tensor, sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Attack whole chunks together; on a CUDA out-of-memory error retry in halves (the result
    does not depend on how chunks are grouped)."""
    try:
        return _run_stage(stage, x, y, sizes)
    except torch.cuda.OutOfMemoryError:
        if len(sizes) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(sizes) // 2
        n1 = sum(sizes[:half])
        log.warning("out of GPU memory attacking %d points together; retrying in halves (set a lower max_batch)", len(x))
        parts = [_attack_group(stage, x[:n1], y[:n1], sizes[:half]), _attack_group(stage, x[n1:], y[n1:], sizes[half:])]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _groups(idx: torch.Tensor, chunk: int, max_batch: int) -> list[tuple[torch.Tensor, list[int]]]:
    """Split robust indices into the reference's batches (chunks), then pack whole chunks into groups."""
    chunks = list(torch.split(idx, chunk))
    out: list[tuple[torch.Tensor, list[int]]] = []
    cur: list[torch.Tensor] = []
    for c in chunks:
        if cur and sum(len(t) for t in cur) + len(c) > max_batch:
            out.append((torch.cat(cur), [len(t) for t in cur]))
            cur = []
        cur.append(c)
    if cur:
        out.append((torch.cat(cur), [len(t) for t in cur]))
    return out


def run_autoattack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    cfg: AutoAttackConfig,
) -> AutoAttackOutcome:
    """AutoAttack on ``(x, y)`` (already on the model's device, model in eval mode).

    The caller owns RNG isolation and mode restoration (see ``robust.attacks.run_attack``). The
    evaluation batch size plays no part: chunks are ``cfg.chunk`` points, as the reference's batches.
    """
    from unlearnbench.robust.projection import project_to_threat

    chunk = cfg.chunk
    dev = x.device
    # Four chunks per pass by default (1000 points, what one pass held before chunks were fixed at
    # 250): fewer Python iterations for small models; results do not depend on it.
    max_batch = cfg.max_batch or 4 * chunk
    max_batch = max(max_batch, chunk)
    stage_names = STAGES[cfg.version]
    n = len(x)

    with torch.no_grad():
        logits0 = model(x[:chunk])
    n_classes = int(logits0.shape[-1])
    n_targets = checks.check_n_classes(n_classes, cfg.n_target_classes, stage_names)
    if cfg.budget_changes:
        log.warning("AutoAttack runs with a changed budget (%s): not the standard AutoAttack; do not report it as such.",
                    ", ".join(f"{k}={v}" for k, v in cfg.budget_changes.items()))

    with torch.no_grad():
        preds = torch.cat([model(x[i : i + chunk]).argmax(1) for i in range(0, n, chunk)])
    clean = preds == y
    robust = clean.clone()
    x_adv = x.clone()
    zero_grad = torch.zeros(n, dtype=torch.bool, device=dev)
    counts = {"clean": int(clean.sum())}
    seconds: dict[str, float] = {}
    stages = {name: _build_stage(name, model, threat, cfg, n_targets) for name in stage_names}

    eta = StagedEta(stage_weights(cfg, n_targets))
    with task(f"autoattack ({cfg.version})", len(stage_names)) as bar:
        # After each stage: the learnt rate times the later stages' work on the points still robust.
        bar.eta_fn = lambda done, elapsed: None if done >= len(stage_names) else eta.remaining(
            stage_names[int(done)], 0, int(robust.sum()), 0.0, list(stage_names[int(done) + 1:]), int(robust.sum()))
        for k, (name, stage) in enumerate(stages.items()):
            t0 = time.perf_counter()
            idx = robust.nonzero().flatten()
            if idx.numel():
                # Progress within the stage, one line per group of chunks and per milestone (a
                # target, a block of queries), each with the ETA of the whole attack.
                with task(f"autoattack {name}", int(idx.numel()), each=True, unit="points") as points:
                    later, total = list(stage_names[k + 1:]), int(idx.numel())
                    points.eta_fn = lambda done, elapsed, name=name, later=later, total=total: eta.remaining(
                        name, done, total, elapsed, later, int(robust.sum()))
                    stage.on_progress = points.report
                    for gidx, sizes in _groups(idx, chunk, max_batch):
                        xg, yg = x[gidx], y[gidx]
                        adv, zero = _attack_group(stage, xg, yg, sizes)
                        adv = project_to_threat(xg, adv, threat)
                        zero_grad[gidx[zero]] = True
                        with torch.no_grad():
                            fooled = model(adv).argmax(1) != yg
                        robust[gidx[fooled]] = False
                        x_adv[gidx[fooled]] = adv[fooled].detach()
                        points.advance(len(gidx))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds[name] = time.perf_counter() - t0
            eta.finish(name, int(idx.numel()), seconds[name])
            counts[name] = int(robust.sum())
            log.info("robust accuracy after %s: %.2f%% (%.1f s)", name.upper(), 100 * counts[name] / n, seconds[name])
            bar.advance()
            bar.report(f"after {name} {100 * counts[name] / n:.1f}% robust (n={n})")

    if cfg.checks:
        checks.check_zero_gradients(int(zero_grad.sum()), n)
        checks.check_square(counts, n)
    return AutoAttackOutcome(x_adv, robust, clean, counts, seconds)
