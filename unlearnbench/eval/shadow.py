"""Shadow-model pools for LiRA and U-LiRA: trained once, stored on disk, reused by evaluations.

Two kinds of pool, both a folder with ``manifest.json`` plus one ``.pt`` checkpoint (written by
``core.checkpoint``) and one ``.npz`` signal file per shadow:

``lira`` (``unlearnbench shadow train --n N``)
    The *population* is the training split followed by the test set (the validation split stays
    out: shadows use it for best-epoch selection, like the target). ``N`` keep-masks make every
    population example IN for exactly ``N // 2`` shadows (the LiRA reference construction).
    Shadow ``j`` is trained on its IN half with the target's recipe. Each ``.npz`` stores its
    ``mask`` and ``phi``: the logit-scaled confidence of every population example under that
    shadow, so an evaluation only needs the target's own predictions.

``ulira`` (``... --ulira-method METHOD --forget SPEC``)
    The U-LiRA protocol of Hayes et al. (2024, "Inexact Unlearning Needs More Careful
    Evaluations to Avoid a False Sense of Privacy") for one unlearning method and config. The
    forget spec names the *candidate* set ``C`` (example-level specs only, e.g. ``random:0.2``).
    The ``n`` pairs are split into ``n - targets`` *shadow* pairs and ``targets`` *target* pairs
    (``--targets``, default ``n // 2``). Keep-masks (the LiRA construction, per group) give every
    pair ``j`` its own forget set ``F_j`` = a random half of ``C``, each candidate in half of the
    shadow pairs' and half of the target pairs' forget sets. Pair ``j``:

    1. ``original_j``: trained on the full training split (``F_j`` included), seed ``o_j``;
    2. ``unlearned_j = unlearn.run(METHOD, original_j, F_j)``, seed ``u_j``;
    3. ``retrained_j = unlearn.run("retrain", F_j)`` with the pool's recipe (the platform's gold
       reference), seed ``r_j`` (independent of ``o_j``: a retrain is not the original's twin).

    The ``.npz`` stores ``forget_mask`` (``F_j`` over ``C``) and ``phi`` of every candidate under
    ``unlearned_j`` and ``retrained_j``; both checkpoints are kept. For a candidate ``x`` the
    "unlearned" observations are ``phi(x)`` under the unlearned models with ``x`` in their forget
    set, the "retrained" ones under the retrained models with ``x`` in theirs; U-LiRA fits a
    Gaussian to each (from the shadow pairs) and scores a model on ``x`` by the likelihood ratio.
    ``ulira_targets`` attacks the ``2 * targets`` target models (half unlearned, half retrained,
    over ``targets`` different forget sets) on every example of their forget sets, calling
    "unlearned" when the log likelihood ratio is positive (no threshold is fitted). The result
    (accuracy and AUC, 95 % intervals over the target pairs) is the manifest's
    ``holdout["ulira"]``. With ``--ulira-method retrain`` the pool is the null
    control: accuracy and AUC about 0.5. Cost per pair: two trainings and one unlearning run.

Every shadow is an independent job run through ``core.executor.run_jobs`` (local or Ray); jobs
return weights and signals, and only this driver writes files. Re-running the same command
resumes a partly built pool; different settings for an existing folder are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnbench.core.data import Splits, TensorSet, UnlearnData
from unlearnbench.core.errors import UserError
from unlearnbench.eval.lira import Variance, balanced_masks, fit_gaussians, usable
from unlearnbench.eval.roc import AttackStats, attack_stats

log = logging.getLogger(__name__)

FORMAT = "unlearnbench-shadow-pool-v1"
HOLDOUT_BOOT = 200  # bootstrap draws of a U-LiRA pool's recorded hold-out result
KINDS = ("lira", "ulira")


# ----------------------------------------------------------------------------- population


def population(splits: Splits) -> TensorSet:
    """The LiRA population: the training split followed by the test set."""
    tr, te = splits.train, splits.test.to(splits.train.device)
    return TensorSet(torch.cat([tr.x, te.x]), torch.cat([tr.y, te.y]), torch.cat([tr.idx, te.idx]), name="population")


def _fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def shadow_seed(pool_seed: int, j: int, role: int = 0) -> int:
    """Independent, reproducible seed of shadow ``j`` (``role`` 1 / 2: a U-LiRA pair's unlearning
    run / retrained model)."""
    entropy = [pool_seed, j] + ([role] if role else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] & 0x7FFFFFFF)


# ----------------------------------------------------------------------------- the pool on disk


@dataclass(frozen=True)
class ShadowPool:
    path: Path
    manifest: dict[str, Any]
    masks: np.ndarray | None = None  # lira: (shadows, population) keep-masks
    phi: np.ndarray | None = None  # lira: (shadows, population)
    phi_unlearned: np.ndarray | None = None  # ulira: (pairs, candidates)
    phi_retrained: np.ndarray | None = None  # ulira: (pairs, candidates)
    forget_masks: np.ndarray | None = None  # ulira: (pairs, candidates), True = in that pair's forget set
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def n(self) -> int:
        return len(self.manifest["shadows"])

    @property
    def train_idx(self) -> np.ndarray:
        return np.asarray(self.manifest["population"]["train_idx"], dtype=np.int64)

    @property
    def test_idx(self) -> np.ndarray:
        return np.asarray(self.manifest["population"]["test_idx"], dtype=np.int64)

    @property
    def forget_idx(self) -> np.ndarray:
        return np.asarray(self.manifest["population"]["forget_idx"], dtype=np.int64)

    @classmethod
    def load(cls, path: str | Path) -> ShadowPool:
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise UserError(f"{str(path)!r} is not a shadow pool (no manifest.json); build one with `unlearnbench shadow train`.")
        from unlearnbench.core.boundary import read_text

        try:
            manifest = json.loads(read_text(manifest_path, "Shadow-pool manifest"))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise UserError(f"Shadow-pool manifest {manifest_path} is corrupt ({str(exc)[:80]}); rebuild the pool.") from None
        if not isinstance(manifest, dict):
            raise UserError(f"{manifest_path} is not an unlearnbench shadow-pool manifest; rebuild the pool.")
        if manifest.get("format") != FORMAT or manifest.get("kind") not in KINDS:
            raise UserError(f"{manifest_path} is not an unlearnbench shadow-pool manifest; rebuild the pool.")
        shadows = sorted(manifest["shadows"], key=lambda s: s["index"])
        if len(shadows) < 2:
            raise UserError(f"Shadow pool {path} holds {len(shadows)} finished shadow(s); finish it by re-running `shadow train`.")
        arrays: dict[str, list[np.ndarray]] = {}
        for s in shadows:
            try:
                with np.load(path / s["signals"], allow_pickle=False) as z:
                    for k in z.files:
                        arrays.setdefault(k, []).append(z[k])
            except (OSError, ValueError) as exc:
                raise UserError(f"Shadow signals {path / s['signals']} are unreadable ({exc}); rebuild the pool.") from None
        if manifest["kind"] == "ulira" and "forget_mask" not in arrays:
            raise UserError(f"U-LiRA pool {path} was built by an older version (one forget set, model pairs); "
                            "rebuild it with `unlearnbench shadow train --ulira-method ...`.")
        manifest = {**manifest, "shadows": shadows}
        stack = lambda k: np.stack(arrays[k]) if k in arrays else None  # noqa: E731
        return cls(path, manifest, masks=stack("mask"), phi=stack("phi"),
                   phi_unlearned=stack("phi_unlearned"), phi_retrained=stack("phi_retrained"),
                   forget_masks=stack("forget_mask"))

    # -- matching a target's data -------------------------------------------------------------

    def check_data(self, data: UnlearnData) -> None:
        """The pool must come from the same dataset and split (and forget set for U-LiRA)."""
        m = self.manifest
        if m["dataset"] != data.info.name:
            raise UserError(f"Shadow pool {self.path} was built on {m['dataset']!r}, not {data.info.name!r}; use a matching pool.")
        train = np.sort(np.r_[data.retain.idx.cpu().numpy(), data.forget.idx.cpu().numpy()])
        test = data.test.idx.cpu().numpy()
        if not (np.array_equal(np.sort(self.train_idx), train) and np.array_equal(np.sort(self.test_idx), np.sort(test))):
            raise UserError(
                f"Shadow pool {self.path} was built with split_seed {m['split_seed']} and val_fraction "
                f"{m['val_fraction']}, which do not match this data; build a pool with the same split."
            )
        if self.kind == "ulira":
            if not np.isin(data.forget.idx.cpu().numpy(), self.forget_idx).all():
                raise UserError(
                    f"U-LiRA pool {self.path} was built for the candidates of forget spec {m['forget']!r}, which do "
                    f"not include the forget set of {str(data.spec)!r}; build one for this forget set."
                )

    def positions(self, idx: torch.Tensor | np.ndarray, source: str) -> np.ndarray:
        """Positions in the pool's signal arrays of the samples with source indices ``idx``
        (``source`` = "train" for forget/retain, "test" for test sets, "forget" for U-LiRA)."""
        ref = getattr(self, f"{source}_idx")
        offset = len(self.train_idx) if source == "test" else 0
        idx = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)
        order = np.argsort(ref)
        found = np.searchsorted(ref, idx, sorter=order)
        found = np.clip(found, 0, len(ref) - 1)
        pos = order[found]
        if not np.array_equal(ref[pos], idx):
            raise UserError(f"Shadow pool {self.path} does not cover these {source} samples; build it on the same split.")
        return pos + offset

    def targets(self, variance: Variance = "auto") -> ULiraResult:
        """The U-LiRA protocol over this pool's models (cached per variance mode)."""
        key = ("targets", variance)
        if key not in self._cache:
            self._cache[key] = ulira_targets(self, variance)
        return self._cache[key]

    def fit(self, variance: Variance = "auto"):
        """Per-example Gaussians over the whole pool (cached per variance mode)."""
        if variance not in self._cache:
            if self.kind == "lira":
                self._cache[variance] = fit_gaussians(self.phi, self.masks, variance=variance)
            else:
                self._cache[variance] = fit_gaussians(self.phi_unlearned, self.forget_masks, self.phi_retrained,
                                                      self.forget_masks, variance=variance)
        return self._cache[variance]


# ----------------------------------------------------------------------------- hold-out checks


def lira_holdout(pool: ShadowPool, targets: int = 4, variance: Variance = "auto") -> dict[str, AttackStats]:
    """Attack shadows ``0..targets-1`` in turn with the other shadows as the attacker's pool.

    Returns pooled stats for ``lira_online``, ``lira_offline`` and ``threshold``: one global
    threshold on phi, which ranks examples exactly like the loss attack (phi and -loss are both
    increasing in p_y).
    """
    if pool.kind != "lira":
        raise ValueError("lira_holdout needs a lira pool")
    scores: dict[str, tuple[list, list]] = {k: ([], []) for k in ("lira_online", "lira_offline", "threshold")}
    for k in range(min(targets, pool.n)):
        others = np.arange(pool.n) != k
        fit = fit_gaussians(pool.phi[others], pool.masks[others], variance=variance)
        member = pool.masks[k]
        target = pool.phi[k]
        for name, s, ok in (
            ("lira_online", fit.online(target), usable(fit, True)),
            ("lira_offline", fit.offline(target), usable(fit, False)),
            ("threshold", target, np.ones_like(member)),
        ):
            scores[name][0].append(s[member & ok])
            scores[name][1].append(s[~member & ok])
    return {k: attack_stats(np.concatenate(m), np.concatenate(n)) for k, (m, n) in scores.items()}


@dataclass(frozen=True)
class ULiraResult:
    """U-LiRA over a target pool (see the module doc). Per pair ``k`` (its unlearned and its
    retrained model as targets, both attacked on ``F_k``): ``acc[k]`` = share of correct calls,
    ``auc[k]`` = AUC of the unlearned target's scores against the retrained target's. The
    intervals are Student-t 95 % intervals over the pairs (examples of one model are not
    independent; pairs are). ``scores_*``: every (target, example) log likelihood ratio."""

    acc: np.ndarray
    auc: np.ndarray
    scores_unlearned: np.ndarray
    scores_retrained: np.ndarray
    n_targets: int
    # two-stage bootstrap (shadow pairs refit + target pairs) percentile intervals; None: not run
    acc_fit: tuple[float, float] | None = None
    auc_fit: tuple[float, float] | None = None
    n_boot: int = 0

    def values(self) -> dict[str, float]:
        acc, acc_lo, acc_hi = mean_interval(self.acc)
        auc, auc_lo, auc_hi = mean_interval(self.auc)
        out = {"acc": acc, "acc_lo": acc_lo, "acc_hi": acc_hi, "auc": auc, "auc_lo": auc_lo, "auc_hi": auc_hi}
        if self.auc_fit is not None and self.acc_fit is not None:
            out.update(acc_fit_lo=self.acc_fit[0], acc_fit_hi=self.acc_fit[1],
                       auc_fit_lo=self.auc_fit[0], auc_fit_hi=self.auc_fit[1], n_boot=self.n_boot)
        return out

    def counts(self) -> dict[str, int]:
        """Members = (target, example) decisions on unlearned targets; non-members on retrained."""
        return {"n_targets": self.n_targets, "n_members": len(self.scores_unlearned),
                "n_nonmembers": len(self.scores_retrained)}


def mean_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval of independent values (NaN interval for fewer than 2)."""
    from scipy import stats as sps

    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def ulira_masks(n: int, targets: int, n_candidates: int, seed: int) -> np.ndarray:
    """Forget masks over the candidates: shadow pairs ``0..n-targets-1`` and target pairs
    ``n-targets..n-1`` each balanced on their own (every candidate forgotten by half of each)."""
    ss = np.random.SeedSequence([seed, 7]).spawn(2)
    shadows = balanced_masks(n - targets, n_candidates, int(ss[0].generate_state(1)[0]))
    tgt = balanced_masks(targets, n_candidates, int(ss[1].generate_state(1)[0]))
    return np.vstack([shadows, tgt])


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of ``pos`` against ``neg`` (ties count one half): the Mann-Whitney U statistic over
    n_pos·n_neg, from mid-ranks — sklearn's ``roc_auc_score`` value without its per-call overhead."""
    from scipy.stats import rankdata

    ranks = rankdata(np.r_[pos, neg])
    n1, n0 = len(pos), len(neg)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _target_scores(u: np.ndarray, r: np.ndarray, masks: np.ndarray, shadows: np.ndarray, targets: np.ndarray,
                   variance: Variance):
    """Fit on the ``shadows`` rows, attack every row of ``targets``: per-target accuracy, AUC and scores."""
    fit = fit_gaussians(u[shadows], masks[shadows], r[shadows], masks[shadows], variance=variance)
    ok = usable(fit, True)  # candidates with observations on both sides
    accs, aucs, su, sr = [], [], [], []
    for k in targets:
        f = masks[k] & ok
        if not f.any():
            accs.append(np.nan)
            aucs.append(np.nan)
            continue
        sub = fit.subset(np.flatnonzero(f))
        score_u, score_r = sub.online(u[k, f]), sub.online(r[k, f])
        # log LR > 0 -> "unlearned": the Bayes rule at equal priors, nothing fitted to the targets
        accs.append(((score_u > 0).sum() + (score_r <= 0).sum()) / (2 * f.sum()))
        aucs.append(_auc(score_u, score_r))
        su.append(score_u)
        sr.append(score_r)
    return np.array(accs), np.array(aucs), su, sr


def ulira_targets(pool: ShadowPool, variance: Variance = "auto", bootstrap: int = 0, seed: int = 0) -> ULiraResult:
    """The U-LiRA protocol: per-example Gaussians from the shadow pairs, every model of the target
    pairs attacked on its forget set.

    Targets never enter the fit, so given the fit the target pairs are independent draws and the
    Student-t interval over them is the textbook one — *conditional on this pool's shadows*. It
    answers "is this pool's attack better than chance on these targets": under the null (both arms
    retrains) each pair's AUC is symmetric about 0.5 whatever the fit, so the interval is valid
    there (issue #23: over 20 rebuilt digits null pools, see docs/evaluation.md). For a claim about
    the *method* (what another pool would find), the fit's own variance matters too:
    ``bootstrap > 0`` adds a two-stage percentile interval, resampling the shadow pairs (refit)
    and the target pairs, both with replacement (``ULiraResult.auc_fit`` / ``acc_fit``).
    (Leave-one-pair-out over all pairs would reuse every pair in the other folds' fits,
    correlating the folds.)
    """
    if pool.kind != "ulira":
        raise ValueError("ulira_targets needs a ulira pool")
    masks, u, r = pool.forget_masks, pool.phi_unlearned, pool.phi_retrained
    n_targets = int(pool.manifest["targets"])
    sh = np.flatnonzero(np.arange(pool.n) < pool.n - n_targets)
    tg = np.flatnonzero(np.arange(pool.n) >= pool.n - n_targets)
    accs, aucs, su, sr = _target_scores(u, r, masks, sh, tg, variance)
    keep = np.isfinite(aucs)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    result = ULiraResult(accs[keep], aucs[keep], cat(su), cat(sr), 2 * int(keep.sum()))
    if bootstrap:
        result = dataclasses.replace(result, **shadow_bootstrap(u, r, masks, sh, tg, variance, bootstrap, seed))
    return result


def shadow_bootstrap(u: np.ndarray, r: np.ndarray, masks: np.ndarray, shadows: np.ndarray, targets: np.ndarray,
                     variance: Variance, n_boot: int, seed: int, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of the mean accuracy and AUC over targets when both the shadow pairs
    (the fit) and the target pairs are resampled with replacement (a two-stage bootstrap)."""
    rng = np.random.default_rng(seed)
    acc_b, auc_b = [], []
    for _ in range(n_boot):
        sh = rng.choice(shadows, len(shadows), replace=True)
        tg = rng.choice(targets, len(targets), replace=True)
        a, c, _, _ = _target_scores(u, r, masks, sh, tg, variance)
        acc_b.append(np.nanmean(a))
        auc_b.append(np.nanmean(c))
    q = [50 * (1 - level), 50 * (1 + level)]
    return {"acc_fit": tuple(float(x) for x in np.nanpercentile(acc_b, q)),
            "auc_fit": tuple(float(x) for x in np.nanpercentile(auc_b, q)), "n_boot": n_boot}
