"""Faithful AutoAttack: the standard cascade with the original budget, batched across chunks."""

from unlearnbench.robust.aa.engine import STAGES, AutoAttackOutcome, run_autoattack

__all__ = ["STAGES", "AutoAttackOutcome", "run_autoattack"]
