"""Adversarial robustness: threat models, the attack registry (torchattacks-based), the standard
AutoAttack reproduced faithfully, robust accuracy, and adversarial training.

- ``robust.threat``: ``ThreatModel(norm, eps)`` and the attack configs;
- ``robust.attacks``: ``ATTACKS`` registry and ``run_attack`` (input checks, eval mode, RNG isolation);
- ``robust.evaluate``: ``robust_accuracy(model, data, attack, threat, ...) -> RobustResult``;
- ``robust.aa``: the AutoAttack engine (APGD/APGD-T/FAB-T/Square matching ``pyautoattack``);
- ``robust.adversarial``: in-loop generators (``retain_attack``) for training and unlearning;
- ``robust.train``: adversarial-training methods (``AT_METHODS``) as hooks for ``core.train.fit``.

This package imports only ``unlearnbench.core`` (never ``unlearn`` or ``eval``) and never imports
``robustbench`` (the torchattacks wheel ships a stray copy).
"""
