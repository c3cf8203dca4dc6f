"""Random mutation testing with cosmic-ray (``make mutate-random``; not in CI; about three hours on one core from scratch).

cosmic-ray (https://github.com/sixty-north/cosmic-ray) generates the mutants and keeps the books:
its operators enumerate every mutation site of a module (numbers, arithmetic, comparisons,
booleans, ``and``/``or``, ``not``, break/continue, exceptions, ...), its work database records each
mutant's diff and outcome, and ``cr-report .mutation/<module>.sqlite`` reads a run back. Why
cosmic-ray and not mutmut 3: see docs/mutation.md ("Random mutation run").

What this script adds, for speed on a 2-core machine:

- **a fast test selection per module** (``MODULES``): the tests that exercise that module's
  numbers, so a mutant costs seconds, not the whole suite;
- **a warm runner**: torch, numpy, scipy, sklearn, pandas and pytest are imported once; each mutant
  is written to a scratch copy of the tree (cosmic-ray's ``use_mutation``, which restores the file
  afterwards) and its tests run in a *forked* child with ``pytest.main``, which imports
  unlearnbench afresh from the mutated copy (so import-time code — registered recipes, config
  defaults — is mutated too, unlike mutmut 3's trampolines);
- **a seeded sample** of at most ``--per-module`` mutants per module (mutant sampling: the kill rate
  of a uniform sample estimates the module's, and its Wilson interval is reported) from the
  operators in ``_kept_operator`` (cosmic-ray's arithmetic-to-bitwise/shift and ``is``/``in``
  swaps are left out: they crash at once on floats and only inflate the score);
- **equivalent mutants by review** (``EQUIVALENT``): a survivor that cannot change any result,
  each with a one-line reason, is taken out of the denominator.

Results: ``.mutation/<module>.sqlite`` (cosmic-ray's work db; resumable) and the "Random mutation
run" section of docs/mutation.md (per module: generated, sampled, killed, survived, equivalent,
score with its 95 % interval, and each surviving mutant's diff).

    python tools/mutate_random.py                        # every module in MODULES
    python tools/mutate_random.py --only core/recipes.py --per-module 25
    python tools/mutate_random.py --report               # rewrite the doc section from the dbs
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_DIR = ROOT / ".mutation"
DOC = ROOT / "docs" / "mutation.md"
MARKER = "## Random mutation run"

# study/expected.py: everything but the digits study run (40 s; it renders what compare() computes)
STUDY_EXPECTED_TESTS = ("tests/study/test_expected.py", "tests/eval/test_stats_differential.py", "-k",
                        "not table1_shape_on_digits and (test_expected or paper_comparison)")

# the method files: each method's mechanism, behaviour, contract, seed and protocol
# tests, selected by -k with its registry name
METHOD_TESTS = ("tests/unlearn/test_mechanisms.py", "tests/unlearn/test_behaviour.py", "tests/unlearn/test_contract.py",
                "tests/unlearn/test_seeds.py", "tests/unlearn/test_protocols.py")

# module (under unlearnbench/) -> pytest arguments of its fast, relevant tests.
MODULES: dict[str, tuple[str, ...]] = {
    # the CLI train + MLflow test (25 s) only re-checks what the unit tests check; left out for speed
    "core/recipes.py": ("tests/core/test_recipes.py", "-k", "not checkpoint_and_mlflow"),
    "core/data/splits.py": ("tests/core/test_data.py",),
    "unlearn/losses.py": ("tests/unlearn/test_losses.py", "tests/unlearn/test_mechanisms.py", "-k",
                          "kl or distill or scrub or bad_teacher or retain_term"),
    "unlearn/masks.py": ("tests/unlearn/test_mechanics.py", "-k", "mask or salun or stepper or omp"),
    # relabel_and_train is SalUn's loop too: its mask_mode tests belong here
    "unlearn/random_label.py": ("tests/unlearn/test_mechanisms.py", "tests/unlearn/test_seeds.py",
                                "tests/unlearn/test_protocols.py", "-k",
                                "random_label or random_labels or salun_gradient_mode"),
    "unlearn/loops.py": ("tests/unlearn/test_mechanics.py", "tests/unlearn/test_mechanisms.py",
                         "tests/unlearn/test_seeds.py", "-k",
                         "stepper or salun or l1 or adv_retain or random_label or scrub_runs or loop"),
    # robust_accuracy's own tests, no digits CNN to train: a hand-built one-pixel model (40 % of 5
    # points), a per-point loop, Wilson/repr, and the metamorphic robust tests (a 1-epoch net).
    # tests/robust/test_attacks_contract.py (35 s, 18 s of it training) checks robust.attacks.run_attack,
    # which this module calls but never changes: it cannot kill a mutant here.
    "robust/evaluate.py": ("tests/robust/test_autoattack_at.py", "tests/test_repr.py", "tests/eval/test_stats_differential.py",
                           "tests/eval/test_metamorphic.py", "-k",
                           "divides_by_all_points or robust_result or robust_accuracy or robust_sub or train_mode "
                           "or evaluator_seed"),
    "unlearn/scar.py": ("tests/unlearn/test_mechanisms.py", "tests/unlearn/test_protocols.py", "tests/unlearn/test_seeds.py",
                        "tests/unlearn/test_contract.py", "tests/unlearn/test_behaviour.py", "tests/unlearn/test_mechanics.py",
                        "-k", "(scar or selective or nearest or balanced_ood) and not scar_self"),
    # the cascade against pyautoattack's run_standard_evaluation point for point at a small budget (the
    # full-budget and adversarially-trained parity tests take 50 s each; they check the same cascade)
    "robust/aa/engine.py": ("tests/robust/test_autoattack.py", "tests/robust/test_attacks_contract.py", "-k",
                            "small_budget or eot_samples or groups_pack or chunks_are or (saved_adversarial and autoattack) or "
                            "(test_attack_contract and autoattack) or sanity_checks or zero_gradient"),
    # eval/: the differential (statsmodels/scipy/sklearn), property, DeLong and paired tests of h-stats
    # are the strong ones; the slow (deep) cases stay skipped
    "eval/intervals.py": ("tests/eval/test_intervals.py", "tests/eval/test_stats_differential.py",
                          "tests/eval/test_stats_properties.py", "tests/eval/test_delong.py",
                          "tests/eval/test_paired.py"),
    "eval/roc.py": ("tests/eval/test_attacks.py", "tests/eval/test_mia_record.py", "tests/eval/test_crossfit.py",
                    "tests/eval/test_stats_differential.py", "tests/eval/test_stats_properties.py",
                    "tests/eval/test_delong.py"),
    "eval/lira.py": ("tests/eval/test_shadow.py", "tests/eval/test_stats_differential.py",
                     "tests/eval/test_stats_properties.py"),
    "eval/crossfit.py": ("tests/eval/test_crossfit.py", "tests/eval/test_metamorphic.py", "-k", "not train_mode"),
    "eval/svm1d.py": ("tests/eval/test_svm1d.py",),
    "study/expected.py": STUDY_EXPECTED_TESTS,
    # the U-LiRA digits protocol (11 s of training) only re-checks what the unit tests check
    "eval/shadow.py": ("tests/eval/test_shadow.py", "tests/eval/test_ulira.py", "tests/eval/test_stats_differential.py",
                       "-k", "not ulira_protocol_on_digits and (test_shadow or test_ulira or holdout or ulira_targets)"),
    # the pool-building jobs and driver, split from eval/shadow.py after the run recorded in docs/mutation.md
    # (the pair job and the driver by hand with stubs; the LiRA shadows train for real in test_shadow.py;
    # the two trained U-LiRA pools of the digits protocol and CLI tests, 14 s, are left out)
    "eval/shadow_train.py": ("tests/eval/test_ulira.py", "tests/eval/test_shadow.py",
                             "-k", "not ulira_protocol_on_digits and not through_the_cli"),
    # ---- eval/metrics/*: the metric plug-ins the engine publishes
    # Lean selections (the machine runs several mutation runners at once): the constructed-logits
    # and hand-computed tests (tests/eval/test_engine.py's by-hand tests were written for these
    # modules), no digits CNN to train where a constructed model does; fast strong files first, as
    # -x stops a killed mutant at its first failing test.
    "eval/metrics/accuracy.py": ("tests/eval/test_paired.py", "tests/eval/test_engine.py", "-k",
                                 "test_paired or papers_gaps or classwise_uses or selection_errors or json_round "
                                 "or per_class or accuracy_metrics"),
    "eval/metrics/gap.py": ("tests/eval/test_stats_differential.py", "tests/eval/test_paired.py", "tests/eval/test_engine.py",
                            "-k", "(gap and not gap_to_itself) or rte_is"),
    "eval/metrics/mia_svc.py": ("tests/eval/test_attacks.py", "tests/eval/test_paired.py", "tests/eval/test_metamorphic.py",
                                "tests/eval/test_engine.py", "-k", "test_attacks or mia_efficacy or papers_gaps"),
    "eval/metrics/mia_threshold.py": ("tests/eval/test_attacks.py", "tests/eval/test_mia_record.py",
                                      "tests/eval/test_delong.py", "tests/eval/test_engine.py", "-k",
                                      "test_attacks or test_mia_record or attacks_record or memorising or pair_splits"),
    "eval/metrics/robustness.py": ("tests/eval/test_engine.py", "-k", "robustness_outcomes"),
    "eval/metrics/rte.py": ("tests/eval/test_engine.py", "-k", "json_round or rte_is"),
    "eval/metrics/aus.py": ("tests/eval/test_engine.py", "-k", "aus"),
    "eval/metrics/divergence.py": ("tests/eval/test_engine.py", "-k", "divergence"),
    "eval/metrics/lira.py": ("tests/eval/test_shadow.py", "-k", "lira_metric or evaluator_runs_lira"),
    # (the end-to-end test trains a tiny DDPM, 13 s; the metrics get known answers from a hand-built classifier)
    "eval/metrics/generation.py": ("tests/generation/test_generation_metrics.py", "-k", "not end_to_end and not swapped"),
    "eval/metrics/base.py": ("tests/eval/test_mia_record.py", "tests/eval/test_attacks.py", "tests/eval/test_paired.py",
                             "tests/eval/test_engine.py", "-k",
                             "test_mia_record or test_attacks or test_paired or eval_context or divergence or papers_gaps "
                             "or per_class or aus_of or rte_is or robustness_outcomes or registered_directly"),
    # the U-LiRA metrics on a pool built by construction (known answers); the CLI test on a trained
    # pool (14 s of training) only re-checks the plumbing
    "eval/metrics/ulira.py": ("tests/eval/test_ulira.py", "-k", "ulira_metric"),
    "eval/metrics/two_model_ulira.py": ("tests/eval/test_ulira.py", "-k", "ulira_metric"),
    # ---- unlearning method files (one plug-in per file)
    # (unlearn/loops.py and unlearn/scar.py, listed above, belong here too)
    # For the method files below, the wiring tests (the method's calls recorded by spies, each
    # argument checked), config defaults and range edges, and hand-built unit tests: the end-to-end
    # runs on the session-trained digits cnn (its training alone takes 7 s idle, 25 s on the shared
    # machine) re-check what these check, through code that has selections of its own.
    "unlearn/salun.py": ("tests/unlearn/test_mechanics.py", "tests/unlearn/test_mechanisms.py", "-k",
                         "salun_hands_its_mask or salun_defaults or salun_config"),
    "unlearn/l1_sparse.py": ("tests/unlearn/test_mechanics.py", "tests/unlearn/test_mechanisms.py", "-k",
                             "l1_coefficient or l1_sparse_wiring or l1_sparse_and_prune_defaults"),
    # OMP itself (masks, sparse original): hand-built models, rewinding, lr rewinding, masked training
    "unlearn/prune.py": ("tests/unlearn/test_prune_first.py", "tests/unlearn/test_mechanics.py", "-k",
                         "not train_prune_writes and not snapshot_holds and (test_prune_first or prune_method_wiring)"),
    # the 'prune' method (OMP, then fine-tune or rewind on retain)
    "unlearn/omp.py": ("tests/unlearn/test_mechanics.py", "tests/unlearn/test_mechanisms.py", "-k",
                       "prune_method_wiring or prune_defaults"),
    # the API runs (a wrecked CIFAR-shaped model, SalUn on CIFAR-shaped data: 20 s) re-check recipe_for end to end
    "unlearn/recipes.py": ("tests/unlearn/test_regime_recipes.py", "-k", "not wrecked_model and not salun_on_cifar"),
    # the CLI runs on a trained checkpoint (50 s) are left out; the loading, listing and choosing tests stay
    "unlearn/presets.py": ("tests/unlearn/test_presets_cli.py", "tests/unlearn/test_protocols.py",
                           "tests/unlearn/test_regime_recipes.py", "-k",
                           "shipped or ls_presets or paper_preset or preset_without or preset_file or recipe_choice "
                           "or api_takes_a_preset"),
    "unlearn/scar_self.py": ("tests/unlearn/test_mechanisms.py", "tests/unlearn/test_protocols.py", "-k", "scar_self"),
    # the numpy differential and hand-built tests; SCAR runs on the trained digits cnn (targets, quirk) left out
    "unlearn/classstats.py": ("tests/unlearn/test_mechanics.py", "tests/unlearn/test_mechanisms.py",
                              "tests/unlearn/test_protocols.py", "-k",
                              "(mahalanobis or nearest or tukey or class_gaussians or forget_term or quirk) "
                              "and not reaches_the_targets and not targets_each_forget_sample and not by_class_accuracy"),
    "unlearn/ood.py": ("tests/unlearn/test_mechanics.py", "tests/unlearn/test_seeds.py",
                       "tests/unlearn/test_protocols.py", "-k", "ood and not scar_balances"),
    # the other method files: METHOD_TESTS, -k its registry name
    "unlearn/scrub.py": (*METHOD_TESTS, "-k", "scrub"),
    "unlearn/bad_teacher.py": (*METHOD_TESTS, "-k", "bad_teacher"),
    "unlearn/ssd.py": (*METHOD_TESTS, "-k", "ssd"),
    "unlearn/boundary_shrink.py": (*METHOD_TESTS, "-k", "boundary_shrink"),
    "unlearn/influence.py": (*METHOD_TESTS, "-k", "influence"),
    "unlearn/finetune.py": (*METHOD_TESTS, "-k", "finetune and not ddpm"),
    "unlearn/grad_ascent.py": (*METHOD_TESTS, "-k", "grad_ascent and not ddpm"),
    "unlearn/retrain.py": (*METHOD_TESTS, "tests/unlearn/test_prune_first.py", "tests/core/test_keep_best.py",
                           "-k", "retrain and not ddpm"),
}

# Modules split after their sample was drawn: module -> the modules that took some of its code.
# --rerun-survivors looks for a survivor's line there when it is gone from the module.
MOVED: dict[str, tuple[str, ...]] = {"eval/shadow.py": ("eval/shadow_train.py",)}

# Reviewed survivors that cannot change a result: module -> {(removed line, added line): reason}.
# Lines are stripped of surrounding whitespace, so the entry survives unrelated edits elsewhere.
EQUIVALENT: dict[str, dict[tuple[str, str], str]] = {
    "core/recipes.py": {
        ('def register_recipe(name: str, *, summary: str, caveat: str = "", source: str = "", paper: bool = False,',
         'def register_recipe(name: str, /, summary: str, caveat: str = "", source: str = "", paper: bool = False,'):
            "keyword-only marker made positional-only: every call passes keywords, no recipe changes",
    },
    "core/data/splits.py": {
        ("def make_unlearn_data(splits: Splits, spec: ForgetSpec | str) -> UnlearnData:",
         "def make_unlearn_data(splits: Splits, spec: ForgetSpec ^ str) -> UnlearnData:"):
            "an annotation: never evaluated under `from __future__ import annotations`",
        ('line = line.split("#", 1)[0].strip()', 'line = line.split("#", 2)[0].strip()'):
            "the text before the first '#' is the same whatever the split limit",
        ("dup = next(i for i in wanted if wanted.count(i) > 1)", "dup = next(i for i in wanted if wanted.count(i) != 1)"):
            "every i drawn from `wanted` occurs at least once there, so count != 1 is count > 1",
        ("forget: str | ForgetSpec | None = None,", "forget: str | ForgetSpec ^ None = None,"):
            "an annotation: never evaluated under `from __future__ import annotations`",
        ("def to(self, device: torch.device | str) -> UnlearnData:", "def to(self, device: torch.device ^ str) -> UnlearnData:"):
            "an annotation: never evaluated under `from __future__ import annotations`",
    },
    "unlearn/masks.py": {
        ("batch_size: int = 256,", "batch_size: int = 255,"):
            "an unused default: the package's only caller (SalUn) always passes its mask_batch_size",
        ("*,", "/,"): "keyword-only marker made positional-only: every caller passes keywords",
        ("generator: torch.Generator | None = None,", "generator: torch.Generator ^ None = None,"):
            "an annotation: never evaluated under `from __future__ import annotations`",
    },
    "robust/evaluate.py": {
        ("attack, int((robust != (clean & adv_ok)).sum()))", "attack, int((robust == (clean & adv_ok)).sum()))"):
            "the count in a log.info line only",
        # sampled before annotations were filtered out, applied to the current file by occurrence
        ("n: int | None = None,", "n: int & None = None,"):
            "an annotation: never evaluated under `from __future__ import annotations`",
        ("def save_adversarial(path: str | Path, result: RobustResult, extra: dict | None = None) -> Path:",
         "def save_adversarial(path: str ^ Path, result: RobustResult, extra: dict | None = None) -> Path:"):
            "an annotation: never evaluated under `from __future__ import annotations`",
    },
    # the AutoAttack engine
    "robust/aa/engine.py": {
        ("stage_names[int(done)], 0, int(robust.sum()), 0.0, list(stage_names[int(done) + 1:]), int(robust.sum()))",
         "stage_names[int(done)], 0, int(robust.sum()), 0.0, list(stage_names[int(done) - 1:]), int(robust.sum()))"):
            "the progress bar's ETA estimate only, no result",
        ("stage_names[int(done)], 0, int(robust.sum()), 0.0, list(stage_names[int(done) + 1:]), int(robust.sum()))",
         "stage_names[int(done)], -1, int(robust.sum()), 0.0, list(stage_names[int(done) + 1:]), int(robust.sum()))"):
            "the progress bar's ETA estimate only, no result",
        ("bar.eta_fn = lambda done, elapsed: None if done >= len(stage_names) else eta.remaining(",
         "bar.eta_fn = lambda done, elapsed: None if done != len(stage_names) else eta.remaining("):
            "the progress bar's ETA estimate only, no result",
        **{('bar.report(f"after {name} {100 * counts[name] / n:.1f}% robust (n={n})")', new):
           "the progress line's text only; the counts returned are counts[name]"
           for new in ('bar.report(f"after {name} { 101 * counts[name] / n:.1f}% robust (n={n})")',
                       'bar.report(f"after {name} {100 * counts[name] + n:.1f}% robust (n={n})")',
                       'bar.report(f"after {name} {100 * counts[name] - n:.1f}% robust (n={n})")')},
        ("stage_names[int(done)], 0, int(robust.sum()), 0.0, list(stage_names[int(done) + 1:]), int(robust.sum()))",
         "stage_names[int(done)], 0, int(robust.sum()), 0.0, list(stage_names[int(done) % 1:]), int(robust.sum()))"):
            "the progress bar's ETA estimate only, no result",
        ("later, total = list(stage_names[k + 1:]), int(idx.numel())",
         "later, total = list(stage_names[k + 0:]), int(idx.numel())"):
            "the stages after this one, for the per-point progress ETA only, no result",
        **{(old, new): "stage_weights is the ETA's prior cost per stage only (measured rates rescale it), no result"
           for old, new in [
               ('"fab-t": 2 * cfg.fab_steps * n_targets, "square": cfg.square_queries / 3}',
                '"fab-t": 2 * cfg.fab_steps // n_targets, "square": cfg.square_queries / 3}'),
               ('return {"apgd-ce": cfg.apgd_steps * eot, "apgd-dlr": cfg.apgd_steps * eot, "apgd-t": cfg.apgd_steps * n_targets,',
                'return {"apgd-ce": cfg.apgd_steps + eot, "apgd-dlr": cfg.apgd_steps * eot, "apgd-t": cfg.apgd_steps * n_targets,')]},
        ('return {"apgd-ce": cfg.apgd_steps * eot, "apgd-dlr": cfg.apgd_steps * eot, "apgd-t": cfg.apgd_steps * n_targets,',
         'return {"apgd-ce": cfg.apgd_steps * eot, "apgd-dlr": cfg.apgd_steps + eot, "apgd-t": cfg.apgd_steps * n_targets,'):
            "stage_weights is the ETA's prior cost per stage only (measured rates rescale it), no result",
        ("if len(sizes) == 1:", "if len(sizes) <= 1:"):
            "a group always holds at least one chunk (_groups never yields an empty one), so <= 1 is == 1",
        ("n_classes = int(logits0.shape[-1])", "n_classes = int(logits0.shape[+1])"):
            "classifier logits are (batch, classes): dimension 1 is the last",
    },
    "eval/intervals.py": {
        ("z: float = Z95) -> Interval | None:", "z: float = Z95) -> Interval & None:"):
            "an annotation: never evaluated under `from __future__ import annotations`",
    },
    "eval/roc.py": {
        **{("if n_nonmembers > 0 and fpr >= min_fpr(n_nonmembers) - 1e-12:",
            f"if n_nonmembers {op} and fpr >= min_fpr(n_nonmembers) - 1e-12:"):
           "for n_nonmembers <= 0 min_fpr is inf, so the second clause is already false for every finite FPR"
           for op in ("!= 0", ">= 0", "> -1")},
        ('return 1.0 / n_nonmembers if n_nonmembers > 0 else float("inf")',
         'return 1.0 / n_nonmembers if n_nonmembers != 0 else float("inf")'):
            "n_nonmembers is a count (the length of the scores), never negative",
    },
    "eval/crossfit.py": {
        **{("below = values[i + 1] if i + 1 < len(values) else values[i] - 1.0",
            f"below = values[i + 1] if i {op} < len(values) else values[i] - 1.0"):
           "unreachable else: at the lowest distinct score TPR = FPR = 1, so a positive gain never picks the last index"
           for op in ("// 1", "+ 0", "* 1", "- 1")},
        ("def cross_fitted_balanced_accuracy(member: np.ndarray, nonmember: np.ndarray, seed: int = 0) -> float:",
         "def cross_fitted_balanced_accuracy(member: np.ndarray, nonmember: np.ndarray, seed: int = 1) -> float:"):
            "an unused default: its only caller (roc.attack_stats) passes the run's seed",
    },
    "eval/svm1d.py": {
        **{("if abs(slope[k]) <= eps and k + 1 < len(ts):", f"if abs(slope[k]) <= eps and k {op} < len(ts):"):
           "unreachable: right of the last kink the slope is the negatives' whole weight (> eps), so k is never last"
           for op in ("/ 1", "// 1", "* 1", "- 1", "+ 0")},
        ("last_of_tie = np.r_[ts[1:] > ts[:-1], True]", "last_of_tie = np.r_[ts[1:] > ts[:+1], True]"):
            "marks inner points of a tie as its last; the slope rises by each point's weight (> 2 eps) inside a "
            "tie, so the k picked returns that same tied value either way",
    },
    # recorded in eval/shadow.py's sample (the code is in eval/shadow_train.py since; its own sample
    # leaves annotations out)
    "eval/shadow.py": {
        ("def _job_data(spec: dict[str, Any], device: torch.device) -> tuple[Splits, UnlearnData | None]:",
         "def _job_data(spec: dict[str, Any], device: torch.device) -> tuple[Splits, UnlearnData ^ None]:"):
            "an annotation: never evaluated under `from __future__ import annotations`",
    },
    "eval/lira.py": {
        ("phi_in: np.ndarray, in_mask: np.ndarray, phi_out: np.ndarray | None = None, out_mask: np.ndarray | None = None,",
         "phi_in: np.ndarray, in_mask: np.ndarray, phi_out: np.ndarray | None = None, out_mask: np.ndarray ^ None = None,"):
            "an annotation: never evaluated under `from __future__ import annotations`",
        ("return ok & (fit.n_in > 0) if online else ok", "return ok & (fit.n_in != 0) if online else ok"):
            "n_in counts the shadow models holding each example, never negative",
        ("enough = n_in.size > 0 and min(int(n_in.min()), int(n_out.min())) >= AUTO_PER_EXAMPLE",
         "enough = n_in.size != 0 and min(int(n_in.min()), int(n_out.min())) >= AUTO_PER_EXAMPLE"):
            "an array's size is never negative",
    },
    "unlearn/random_label.py": {
        ('if getattr(config, "mask_mode", "exact") == "gradient":', 'if getattr(config, "mask_mode", "exact") >= "gradient":'):
            "mask_mode is validated to 'exact' or 'gradient', and 'exact' < 'gradient': >= is == on them",
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
        **{('description=f"{description} {epoch + 1}/{config.epochs}")',
            f'description=f"{{description}} {{epoch {op}}}/{{config.epochs}}")'):
           "the progress bar's label only (which epoch is shown), no result"
           for op in ("- 1", "// 1", "** 1", "/ 1", "+ 0")},
        **{("def relabel_and_train(model: nn.Module, data: UnlearnData, config, mask: Mask | None, description: str) "
            "-> nn.Module:",
            f"def relabel_and_train(model: nn.Module, data: UnlearnData, config, mask: Mask {op} None, "
            "description: str) -> nn.Module:"):
           "an annotation: never evaluated under `from __future__ import annotations`" for op in ("&", "^")},
    },
    # ---- eval/metrics/*
    "eval/metrics/accuracy.py": {
        ("if n == 0:", "if n <= 0:"): "n counts the class's images in the split, never negative",
    },
    "eval/metrics/gap.py": {
        ('@register_metric("gap", direction="lower", gap=False, needs=("reference",), stage=2, keys="gap/<key>",',
         '@register_metric("gap", direction="lower", gap=True, needs=("reference",), stage=2, keys="gap/<key>",'):
            "a metric's gap flag is read only by the gap metric, from the values already computed; gap runs once, "
            "before its own values exist",
        ('@register_metric("avg_gap", direction="lower", gap=False, needs=("reference",), stage=3,',
         '@register_metric("avg_gap", direction="lower", gap=True, needs=("reference",), stage=3,'):
            "a metric's gap flag is read only by the gap metric (stage 2), which has run before avg_gap (stage 3)",
        ('@register_metric("gap", direction="lower", gap=False, needs=("reference",), stage=2, keys="gap/<key>",',
         '@register_metric("gap", direction="lower", gap=False, needs=("reference",), stage= 3, keys="gap/<key>",'):
            "the only other stage-2/3 metric is avg_gap, which is not gap-able and reads only stage 0-1 values: "
            "gap sees the same values at stage 3",
        ('@register_metric("avg_gap", direction="lower", gap=False, needs=("reference",), stage=3,',
         '@register_metric("avg_gap", direction="lower", gap=False, needs=("reference",), stage= 2,'):
            "avg_gap reads only stage 0-1 values and is not gap-able: beside gap at stage 2 it computes the same",
    },
    "eval/metrics/mia_threshold.py": {
        **{(f'"{a}": ("{a}", -1.0),', f'"{a}": ("{a}", - 2.0),'):
           "doubling every score is exact in floating point and keeps every comparison: the AUC, DeLong's variance, "
           "the cross-fitted thresholds' verdicts, the TPRs and the ROC points (FPR, TPR only) are the same"
           for a in ("loss", "entropy", "m_entropy")},
        ('"confidence": ("confidence", 1.0),', '"confidence": ("confidence", 2.0),'):
           "doubling every score is exact in floating point and keeps every comparison: the AUC, DeLong's variance, "
           "the cross-fitted thresholds' verdicts, the TPRs and the ROC points (FPR, TPR only) are the same",
    },
    "eval/metrics/base.py": {
        **{("if key[0] == id(model) and entry[0] is model:", f"if key[0] {op} id(model) {conj} entry[0] is model:"):
           "an entry's key is (id of its own model, split) and the entry keeps that model alive, so key[0] == id(model) "
           "holds exactly when entry[0] is model"
           for op, conj in (("==", "or"), ("<=", "and"))},
        ("self.seconds += time.perf_counter() - t0", "self.seconds += time.perf_counter() % t0"):
            "t0 <= perf_counter() < 2 t0 (a prediction takes less than the monotonic clock's reading at its start, the "
            "system's uptime): the remainder is the difference, both exact in floating point",
    },
    "eval/metrics/mia_svc.py": {
        ("if model is None:", "if model is not None:"):
            "the first of the two identical lines, the log.info when the low-rank solver gives up (the run's "
            "survivor); the second, the libsvm fallback, is killed by test_svc_attack_lowrank_never_calls_libsvm_when_it_converges",
        ("if len(retain) < n:", "if len(retain) == n:"): "the condition of a log.warning only",
    },
    "eval/metrics/two_model_ulira.py": {
        ('@register_metric("two_model_ulira", direction="lower", needs=("ulira_pool", "reference_model"), gap=False,',
         '@register_metric("two_model_ulira", direction="lower", needs=("ulira_pool", "reference_model"), gap=True,'):
            "it needs a reference model, whose values come from a plan without the metrics needing a pool or a "
            "reference model: the reference never has these keys, so there is never a gap to take",
        ("if mine is None or ref is None:", "if mine is None and ref is None:"):
            "the engine calls it only with a reference model (needs) and the forget set is never empty "
            "(check_unlearn_data), so neither prediction is None",
        ("ok = usable(fit, True)[pos]", "ok = usable(fit, False)[pos]"): "in a U-LiRA pool the IN and OUT observations of an example come from the same forget masks (the pair's unlearned and retrained models), so n_in == n_out and n_out > 0 already means n_in > 0",
    },
    "eval/metrics/ulira.py": {
        ('if variance == "auto" and "auc_fit_lo" in hold:  # the pool\'s recorded two-stage bootstrap (shadows + targets)',
         'if variance <= "auto" and "auc_fit_lo" in hold:  # the pool\'s recorded two-stage bootstrap (shadows + targets)'):
            "EvalConfig admits only auto / per_example / global (and pool.targets above refuses others): of those "
            "only 'auto' is <= 'auto'",
        ("continue", "break"):
            "the loop's last item is the reference; the model's forget predictions are never None (the forget "
            "set is never empty), so break and continue end the loop alike",
        ("ok = usable(fit, True)[pos]", "ok = usable(fit, False)[pos]"): "in a U-LiRA pool the IN and OUT observations of an example come from the same forget masks (the pair's unlearned and retrained models), so n_in == n_out and n_out > 0 already means n_in > 0",
    },
    "eval/metrics/robustness.py": {
        ("if tset is None or len(tset) == 0:", "if tset is None or len(tset) <= 0:"): "a set's length is never negative",
    },
    "eval/metrics/generation.py": {
        ("net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)",
         "net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True)"):
            "the user's weights are loaded over every parameter and buffer right after (strict=True)",
        ("x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x", "x = x.expand(-1, 3, -1, -1) if x.shape[1] <= 1 else x"):
            "an image has at least one channel: <= 1 is == 1",
        ("hit = (probs.argmax(-1) == labels).double()", "hit = (probs.argmax(+1) == labels).double()"):
            "probs is (samples, classes): dimension 1 is the last",
        ("entropy = (-(probs.clamp_min(1e-12).log() * probs).sum(-1)).double().numpy()",
         "entropy = (-(probs.clamp_min(1e-12).log() * probs).sum(1)).double().numpy()"):
            "probs is (samples, classes): dimension 1 is the last",
    },
    # ---- unlearning method files
    "unlearn/loops.py": {
        ("_HOOK_SECONDS = [0.0]", "_HOOK_SECONDS = [ 1.0]"):
            "the counter's start cancels: its only reader (unlearn.run) subtracts hook_seconds() before from after",
        ("return (y + shift) % num_classes", "return (y - shift) % num_classes"):
            "y - U{1..C-1} mod C is uniform over the C - 1 wrong classes as y + U is: the documented law, only "
            "another draw of it for a given seed (no spec fixes which)",
        ("amp: bool = True,", "amp: bool = False,"):
            "an unused default: all ten run_epochs callers pass amp=config.amp",
    },
    "unlearn/salun.py": {
        **{("gen = torch.Generator().manual_seed(config.seed + 1)  # independent of the RL stream",
            f"gen = torch.Generator().manual_seed(config.seed {op})  # independent of the RL stream"):
           "any fixed non-zero offset gives the mask a seeded stream of its own, apart from RL's (seed + 0); which "
           "offset is a convention" for op in ("+ 2", "- 1")},
    },
    "unlearn/prune.py": {
        ("passed = [m for m in config.milestones if m - shift <= 1e-12]",
         "passed = [m for m in config.milestones if m - shift < 1e-12]"):
            "differs only when m - shift is exactly 1e-12, the tolerance's own edge: a milestone at the rewind point "
            "gives 0 or a rounding error of about 1e-16 (both below either way), any other one is far off",
    },
    "unlearn/omp.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/scar_self.py": {
        ("teacher = copy.deepcopy(model).eval().requires_grad_(False)",
         "teacher = copy.deepcopy(model).eval().requires_grad_(True)"):
            "the teacher is only called under torch.no_grad() (its logits, predictions and class statistics) and is "
            "not in the optimizer: no graph, no step",
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/scar.py": {
        **{('log.info("scar: early stop in epoch %d (forget accuracy %.2f%% < %.2f%%)", epoch + 1, acc, stop_at)',
            f'log.info("scar: early stop in epoch %d (forget accuracy %.2f%% < %.2f%%)", epoch {op}, acc, stop_at)'):
           "the epoch number in a log.info line only" for op in ("+ 0", "** 1", "- 1", "* 1", "// 1", "/ 1", "+ 2")},
    },
    "unlearn/classstats.py": {
        **{('warnings.warn("class statistics got negative features; use delta=1 for such backbones", stacklevel=2)',
            f'warnings.warn("class statistics got negative features; use delta=1 for such backbones", stacklevel={v})'):
           "which caller's line the warning names; the warning itself and every result are unchanged" for v in (" 3", " 1")},
    },
    "unlearn/ood.py": {
        ('mode="bicubic", align_corners=False)[0]', 'mode="bicubic", align_corners=False)[ -1]'):
            "F.interpolate gets a batch of one image here, so [0] and [-1] are the same image",
        ("p = torch.rand(k, 3, 2, generator=g)  # start, control, end points in [0, 1]^2",
         "p = torch.rand(k, 4, 2, generator=g)  # start, control, end points in [0, 1]^2"):
            "a fourth point is drawn and never used: the strokes follow the same law (another draw of it per seed)",
    },
    "unlearn/recipes.py": {
        **{("for c, size in ((1, 8), (3, 32)):  # small, natural-32", f"for c, size in (( {c}, 8), (3, 32)):  # small, natural-32"):
           "8 px images are the small regime whatever the channel count (regime_of tests the size first)" for c in (0, 2)},
        **{("for c, size in ((1, 8), (3, 32)):  # small, natural-32", f"for c, size in ((1, {v}), (3, 32)):  # small, natural-32"):
           "any size up to 16 px is the small regime: 7 or 9 px pick the same recipe as 8" for v in (7, 9)},
    },
    "unlearn/scrub.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
        ("teacher = copy.deepcopy(model).eval().requires_grad_(False)",
         "teacher = copy.deepcopy(model).eval().requires_grad_(True)"):
            "the teacher is only called under torch.no_grad() and is not in the optimizer: no graph, no step",
    },
    "unlearn/bad_teacher.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/ssd.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/boundary_shrink.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/influence.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
        **{("chunk = max(1, min(64, (1 << 26) // max(1, n_params)))  # bound the (chunk, P) gradient block",
            f"chunk = max(1, min(64, {e}))  # bound the (chunk, P) gradient block"):
           "how many per-sample gradients vmap computes at once; each sample's gradient and the recursion's "
           "order are the same for every chunk size" for e in ("(1 << 26) ** max(1, n_params)", "( 2 << 26) // max(1, n_params)",
                                                     "(1 << 27) // max(1, n_params)")},
        **{("batch_size: int = 256", f"batch_size: int = {v}"):
           "only batches the gradient sums (batch mean x batch size): the same sums up to float rounding"
           for v in (255, 257)},
    },
    "unlearn/finetune.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/grad_ascent.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
    "unlearn/retrain.py": {
        **{("seed: int = 0", f"seed: int = {v}"):
           "never used: unlearn.build_config always sets the config's seed from run(seed=...)" for v in (-1, 1)},
    },
}

_ARITH = {"Add", "Sub", "Mul", "Div", "FloorDiv", "Mod", "Pow"}
_BITS = {"BitOr", "BitAnd", "BitXor"}
_COMPARE = {"Eq", "NotEq", "Lt", "LtE", "Gt", "GtE"}


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Source spans of the type annotations of a module that has ``from __future__ import
    annotations``: there they are never evaluated, so a mutant inside one is equivalent by
    construction (earlier runs spent about one sampled mutant in ten on them, each then reviewed
    by hand). Empty for a module without that import, where annotations are evaluated."""
    import ast

    tree = ast.parse(path.read_text())
    lazy = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body)
    if not lazy:
        return []
    spans = []
    for node in ast.walk(tree):
        found = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            found.append(node.returns)
        elif isinstance(node, ast.arg) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.AnnAssign):
            found.append(node.annotation)
        spans += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in found]
    return spans


def _in_spans(pos: tuple[int, int], spans: list) -> bool:
    """Whether a (line, column) position, as cosmic-ray records it, lies inside one of the spans."""
    return any(start <= tuple(pos) < end for start, end in spans)


def _kept_operator(name: str) -> bool:
    """Operators sampled: cosmic-ray's, minus cross-family swaps that only crash (see module doc)."""
    op = name.split("/")[-1]
    m = re.fullmatch(r"Replace(BinaryOperator|ComparisonOperator)_(\w+?)_(\w+)", op)
    if not m:
        return True
    kind, a, b = m.groups()
    families = [_ARITH, _BITS] if kind == "BinaryOperator" else [_COMPARE, {"Is", "IsNot"}, {"In", "NotIn"}]
    return any(a in f and b in f for f in families)


# ------------------------------------------------------------------ running


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return [f for f in out if f and not f.startswith((".venv", "mlruns", "mlartifacts", ".mutation"))
            and (ROOT / f).is_file()]


def _copy_tree(dest: Path) -> None:
    for f in _tree_files():
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, target)


def _warm_imports() -> None:
    """Heavy third-party imports done once in the parent; unlearnbench itself is never imported
    here, so each forked child imports the mutated copy."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.svm  # noqa: F401
    import torch

    torch.set_num_threads(1)
    try:
        import hypothesis  # noqa: F401
        import torchattacks  # noqa: F401
        import torchvision  # noqa: F401  (2-5 s per child otherwise: datasets, Inception features, ResNets)
    except ImportError:
        pass


def _run_tests(copy: Path, args: tuple[str, ...], timeout: float) -> tuple[str, str]:
    """('killed' | 'survived' | 'timeout', last output line) of ``pytest args`` in a forked child."""
    out_path = copy / ".mutation-out.txt"
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            os.setsid()
            os.chdir(copy)
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.path.insert(0, str(copy))
            import pytest

            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-W", "ignore", *args]))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", ""
        time.sleep(0.05)
    text = out_path.read_text(errors="replace") if out_path.exists() else ""
    tail = (text.strip().splitlines() or [""])[-1]
    code = os.waitstatus_to_exitcode(status)
    return ("survived" if code == 0 else "killed"), tail


def _sample(items: list, k: int, seed: int) -> list:
    items = sorted(items, key=lambda w: (w.mutations[0].operator_name, w.mutations[0].occurrence))
    return items if len(items) <= k else random.Random(seed).sample(items, k)


def recheck_survivors(module: str, copy: Path, timeout: float) -> None:
    """Run each recorded non-equivalent survivor again, after tests were added for it.

    The mutant is re-applied from its recorded diff (the removed line, found exactly once in the
    current file, replaced by the added line), not from cosmic-ray's occurrence index: other
    commits may have moved the module's mutation sites since the sample was drawn. A survivor
    whose line is gone or ambiguous now is reported and left as it was."""
    import sqlite3

    db_path = DB_DIR / (module.replace("/", "__") + ".sqlite")
    if not db_path.exists():
        return
    path = copy / "unlearnbench" / module
    args = MODULES[module]
    with sqlite3.connect(db_path) as con:
        rows = con.execute("SELECT job_id, diff FROM work_results WHERE upper(test_outcome) = 'SURVIVED'").fetchall()
        specs = {job: (op, _json_args(op_args), occ) for job, op, op_args, occ in con.execute(
            "SELECT job_id, operator_name, operator_args, occurrence FROM mutation_specs").fetchall()}
    rows = [(job, diff) for job, diff in rows if _key(diff) not in EQUIVALENT.get(module, {})]
    print(f"{module}: {len(rows)} survivors to check again", flush=True)
    if not rows:
        return
    status, tail = _run_tests(copy, args, timeout * 3)
    if status != "survived":
        print(f"{module}: baseline {status}: {tail}; not re-checked", flush=True)
        return
    original = path.read_text()
    lines = original.splitlines(keepends=True)
    baselines: dict[str, str] = {}
    for job, diff in rows:
        old, new = _key(diff)
        target, target_args, target_original = path, args, original
        hits = [i for i, ln in enumerate(lines) if ln.strip() == old]
        if len(hits) == 1:
            mutated = _replace_line(lines, hits[0], new)
        elif not hits and module in MOVED:
            # The line moved to a module split from this one after the sample: re-check it there,
            # with that module's tests (their baseline must pass).
            mutated = None
            for other in MOVED[module]:
                other_path = copy / "unlearnbench" / other
                other_lines = other_path.read_text().splitlines(keepends=True)
                found = [i for i, ln in enumerate(other_lines) if ln.strip() == old]
                if len(found) != 1:
                    continue
                if other not in baselines:
                    baselines[other] = _run_tests(copy, MODULES[other], timeout * 3)[0]
                if baselines[other] == "survived":
                    target, target_args, target_original = other_path, MODULES[other], "".join(other_lines)
                    mutated = _replace_line(other_lines, found[0], new)
                    break
            if mutated is None:
                print(f"  stale (moved, not found): {old}", flush=True)
                continue
        else:
            # Not one changed line (a removed decorator, a line found twice): cosmic-ray's own
            # operator and occurrence, accepted only if they still give the recorded diff.
            mutated = _mutant_from_spec(path, *specs[job], diff)
            if mutated is None:
                print(f"  stale ({len(hits)} matches): {old}", flush=True)
                continue
        try:
            target.write_text(mutated)
            status, tail = _run_tests(copy, target_args, timeout)
        finally:
            target.write_text(target_original)
        if status != "survived":
            where = "" if target == path else f" (in {target.relative_to(copy / 'unlearnbench')})"
            with sqlite3.connect(db_path) as con:
                con.execute("UPDATE work_results SET test_outcome = 'KILLED', output = ? WHERE job_id = ?",
                            (f"{status} on re-check{where}: {tail}", job))
        print(f"  {status:8s} {old} → {new}", flush=True)


def _replace_line(lines: list[str], i: int, new: str) -> str:
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    return "".join(lines[:i] + [indent + new + "\n"] + lines[i + 1:])


def _json_args(text: str | None) -> dict:
    """An operator's arguments as the work db stores them (JSON, sometimes a JSON-encoded JSON string)."""
    value = json.loads(text or "{}")
    return json.loads(value) if isinstance(value, str) else (value or {})


def _mutant_from_spec(path: Path, operator: str, operator_args: dict, occurrence: int, diff: str) -> str | None:
    """The module's text with cosmic-ray's mutant (operator, occurrence) applied, or None if that
    no longer gives the recorded diff (the file changed since the sample was drawn)."""
    from cosmic_ray.mutating import use_mutation
    from cosmic_ray.plugins import get_operator

    with use_mutation(path, get_operator(operator)(**operator_args), occurrence) as (before, after):
        if after is None or "\n".join(_diff_lines(before, after)) != diff:
            return None
        return after


def _key(diff: str | None) -> tuple[str, str]:
    """(removed line, added line), stripped: how EQUIVALENT names a mutant."""
    lines = (diff or "").splitlines()
    return (next((ln[1:].strip() for ln in lines if ln.startswith("-")), ""),
            next((ln[1:].strip() for ln in lines if ln.startswith("+")), ""))


def run_module(module: str, copy: Path, per_module: int, seed: int, timeout: float) -> None:
    from cosmic_ray.commands.init import _all_work_items
    from cosmic_ray.mutating import use_mutation
    from cosmic_ray.plugins import get_operator
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    args = MODULES[module]
    DB_DIR.mkdir(exist_ok=True)
    db_path = DB_DIR / (module.replace("/", "__") + ".sqlite")
    t0 = time.perf_counter()
    status, tail = _run_tests(copy, args, timeout * 3)
    print(f"{module}: baseline {status} ({time.perf_counter() - t0:.0f} s) {tail}", flush=True)
    if status != "survived":
        print(f"{module}: the tests fail on the unmutated tree; skipped", flush=True)
        return
    base_seconds = time.perf_counter() - t0
    with use_db(str(db_path), WorkDB.Mode.create) as db:
        if db.num_work_items == 0:
            # Paths relative to the scratch copy's root, so a resumed run finds them in a new copy.
            os.chdir(copy)
            every = list(_all_work_items([Path("unlearnbench") / module], {}))
            spans = _annotation_spans(Path("unlearnbench") / module)
            kept = [w for w in every if _kept_operator(w.mutations[0].operator_name)
                    and not _in_spans(w.mutations[0].start_pos, spans)]
            db.add_work_items(_sample(kept, per_module, seed))
            (DB_DIR / (db_path.stem + ".generated")).write_text(f"{len(every)} {len(kept)}\n")
        pending = list(db.pending_work_items)
        print(f"{module}: {db.num_work_items} sampled, {len(pending)} to run", flush=True)
        os.chdir(copy)
        for i, item in enumerate(pending, 1):
            spec = item.mutations[0]
            op = get_operator(spec.operator_name)(**(spec.operator_args or {}))
            with use_mutation(Path(spec.module_path), op, spec.occurrence) as (before, after):
                if after is None:
                    db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.NO_TEST))
                    continue
                status, tail = _run_tests(copy, args, max(timeout, 4 * base_seconds))
            diff = "\n".join(_diff_lines(before, after))
            outcome = TestOutcome.SURVIVED if status == "survived" else TestOutcome.KILLED
            db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.NORMAL, test_outcome=outcome,
                                                  output=f"{status}: {tail}", diff=diff))
            shown = " → ".join(ln[1:].strip() for ln in diff.splitlines()[:2])
            print(f"  [{i}/{len(pending)}] {status:8s} {shown}", flush=True)
        os.chdir(ROOT)


def _diff_lines(before: str, after: str) -> list[str]:
    """The changed line, before and after (cosmic-ray mutates one node, so one line or a few)."""
    import difflib

    return [ln for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


# ------------------------------------------------------------------ reporting


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def module_rows(module: str) -> dict | None:
    from cosmic_ray.work_db import WorkDB, use_db

    db_path = DB_DIR / (module.replace("/", "__") + ".sqlite")
    if not db_path.exists():
        return None
    gen_file = DB_DIR / (db_path.stem + ".generated")
    generated, kept = (int(x) for x in gen_file.read_text().split()) if gen_file.exists() else (0, 0)
    killed, survivors, equivalent, untested = 0, [], [], 0
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        sampled = db.num_work_items
        for _item, result in db.results:
            if result.test_outcome is None:
                untested += 1
            elif result.test_outcome == "killed":
                killed += 1
            else:
                key = _key(result.diff)
                why = EQUIVALENT.get(module, {}).get(key)
                (equivalent if why else survivors).append((key, why))
        done = db.num_results
    return dict(module=module, generated=generated, kept=kept, sampled=sampled, done=done, killed=killed,
                survived=len(survivors), equivalent=equivalent, survivors=survivors, untested=untested)


def write_section(modules: list[str], note: str = "") -> None:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    import cosmic_ray

    version = getattr(cosmic_ray, "__version__", "") or _dist_version("cosmic-ray")
    lines = [
        MARKER, "",
        f"`make mutate-random` (= `python tools/mutate_random.py`; not in CI). Tool: cosmic-ray {version}. "
        f"Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC at commit `{sha}`.",
        "",
        "Per module: *generated* = every mutant cosmic-ray's operators produce; *kept* = without the",
        "cross-family operator swaps that only crash (arithmetic to shifts/bitwise, `==` to `is`/`in`) and,",
        "since 2026-12-06 17:00 UTC, without mutants inside type annotations of modules with",
        "`from __future__ import annotations` (never evaluated there, so equivalent by construction; rows",
        "run before that list them as reviewed equivalents);",
        "*sampled* = a seeded uniform sample of those, each run against the module's fast test selection",
        "(`MODULES` in `tools/mutate_random.py`); *equivalent* = survivors that cannot change any result,",
        "by review (reasons below). Score = killed / (run - equivalent), with its 95 % Wilson interval",
        "over the sample.",
        "",
        "**Why cosmic-ray, not mutmut 3.** Both were tried on `core/recipes.py` with the same tests.",
        "mutmut 3.8.1 mutates only inside function bodies and switches mutants through trampolines chosen",
        "at call time in processes forked *after* import: module-level code is never mutated, and",
        "code that runs at import (the `register_recipe(...)` calls that set what the paper recipes",
        "train with, config defaults, registrations) runs unmutated. On that module 85 of its first 89",
        "mutants \"survived\" for that reason alone, and the values issue #19 asks about could not be",
        "mutated at all. cosmic-ray mutates the whole syntax tree (module level, class bodies, defaults)",
        "and runs the tests in a fresh interpreter, so import-time code is mutated too; its cost, a",
        "cold start per mutant, is removed here by a warm forked runner (torch and friends imported",
        "once; unlearnbench imported afresh from the mutated copy in each child).",
        "",
        "| module | generated | kept | sampled | run | killed | survived | equivalent | score (95 % CI) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for module in modules:
        r = module_rows(module)
        if r is None:
            lines.append(f"| `{module}` | not run | | | | | | | |")
            continue
        judged = r["killed"] + r["survived"]
        lo, hi = _wilson(r["killed"], judged)
        score = f"{100 * r['killed'] / judged:.0f} % ({100 * lo:.0f}–{100 * hi:.0f})" if judged else "n/a"
        lines.append(f"| `{module}` | {r['generated']} | {r['kept']} | {r['sampled']} | {r['done']} | {r['killed']} | "
                     f"{r['survived']} | {len(r['equivalent'])} | {score} |")
        for (old, new), why in r["equivalent"]:
            details.append(f"- `{module}` equivalent: `{old}` → `{new}` — {why}")
        for (old, new), _ in r["survivors"]:
            details.append(f"- `{module}` **survived**: `{old}` → `{new}`")
    if note:
        lines += ["", note]
    if details:
        lines += ["", "### Equivalent and surviving mutants", "", *details]
    text = DOC.read_text() if DOC.exists() else ""
    head = text.split(MARKER)[0].rstrip() + "\n\n" if MARKER in text or text else ""
    DOC.write_text(head + "\n".join(lines) + "\n")


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated modules (as in MODULES, e.g. core/recipes.py)")
    ap.add_argument("--per-module", type=int, default=25, help="mutants sampled per module (docs/mutation.md: 25)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant (at least 4x the baseline)")
    ap.add_argument("--report", action="store_true", help="only rewrite the doc section from the dbs")
    ap.add_argument("--note", default="", help="a sentence recorded under the table (what was or was not run, why)")
    ap.add_argument("--fresh", action="store_true", help="discard the modules' dbs and sample again")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="re-check the recorded survivors from their diffs (after adding tests for them)")
    args = ap.parse_args()
    modules = list(MODULES)
    if args.only:
        modules = args.only.split(",")
        unknown = sorted(set(modules) - set(MODULES))
        if unknown:
            print(f"unknown module(s): {', '.join(unknown)}; choose from {', '.join(MODULES)}", file=sys.stderr)
            return 2
    if not args.report:
        sys.dont_write_bytecode = True  # a mutated file must never be shadowed by a stale .pyc
        _warm_imports()
        os.environ["PYTHONPATH"] = ""  # set per copy below; CLI subprocesses of the tests need it
        with tempfile.TemporaryDirectory(prefix="mutate-random-") as tmp:
            copy = Path(tmp)
            _copy_tree(copy)
            os.environ["PYTHONPATH"] = str(copy)
            os.environ["OMP_NUM_THREADS"] = "1"
            os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            for module in modules:
                if args.fresh:
                    for f in DB_DIR.glob(module.replace("/", "__") + ".*"):
                        f.unlink()
                if args.rerun_survivors:
                    recheck_survivors(module, copy, args.timeout)
                    continue
                run_module(module, copy, args.per_module, args.seed, args.timeout)
    write_section(list(MODULES), args.note)
    print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
