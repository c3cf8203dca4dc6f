"""Curated mutation check over the lines that decide published numbers (``make mutate``; not in CI).

Each mutant is (file, exact original snippet, replacement, why, tests). For every mutant the
script copies the working tree once into a scratch folder, applies the one edit there (the
working tree is never touched), runs only the mutant's tests, and records

- ``killed``: the tests fail on the mutant (what we want);
- ``survived``: they pass: no test catches this bug;
- ``skipped``: the original snippet is not in the file (exactly once) any more: the code moved
  on, so the mutant must be re-targeted; reported, never counted.

Before the mutants, each distinct test selection runs once on the unmutated copy; a selection
that fails there cannot judge a mutant (its mutants are reported as ``baseline-failed``).

Score = killed / (killed + survived). Results go to ``docs/mutation.md`` (``--out``).

    python tools/mutate.py                 # all mutants
    python tools/mutate.py --only scar-farthest,rl-forbid-true
    python tools/mutate.py --list
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    replacement: str
    why: str
    tests: tuple[str, ...]
    note: str = ""  # why it may survive on a branch (shown for survivors)


U = "unlearnbench/"
M = [
    # ------------------------------------------------------------------ MIA metrics
    Mutant("auc-labels-flipped", U + "eval/roc.py", "auc = float(roc_auc_score(y, s))",
           "auc = float(roc_auc_score(1 - y, s))",
           "attack AUC computed with members and non-members swapped (AUC 1 - x)",
           ("tests/eval/test_attacks.py",)),
    Mutant("tpr-low-fpr-loose", U + "eval/roc.py", "ok = np.flatnonzero(fpr <= a + 1e-12)",
           "ok = np.flatnonzero(fpr <= 10 * a + 1e-12)",
           "TPR at FPR a read at FPR 10a (the low-FPR numbers LiRA is judged by)",
           ("tests/eval/test_attacks.py", "tests/eval/test_mia_record.py")),
    Mutant("balacc-in-sample", U + "eval/crossfit.py",
           "return (balanced_accuracy_at(m_b, n_b, best_threshold(m_a, n_a))",
           "return (balanced_accuracy_at(m_a, n_a, best_threshold(m_a, n_a))",
           "balanced accuracy scored on the half its threshold was chosen on (optimistic, issue #16)",
           ("tests/eval/test_crossfit.py",)),
    Mutant("balacc-threshold-side", U + "eval/crossfit.py", "tpr = float(np.mean(np.asarray(member) > threshold))",
           "tpr = float(np.mean(np.asarray(member) >= threshold))",
           "held-out rule counts points on the threshold as members",
           ("tests/eval/test_crossfit.py",)),
    Mutant("ua-not-complement", U + "eval/metrics/accuracy.py", 'values={"ua": 100.0 - ctx.values["forget_acc"]}',
           'values={"ua": ctx.values["forget_acc"]}', "UA = forget accuracy instead of 100 - forget accuracy",
           ("tests/eval/test_engine.py",)),
    Mutant("mia-efficacy-not-complement", U + "eval/metrics/mia_svc.py",
           'return float(1.0 - SVC(C=3, gamma="auto", kernel="rbf").fit(x[:, None], y).predict(t[:, None]).mean())',
           'return float(SVC(C=3, gamma="auto", kernel="rbf").fit(x[:, None], y).predict(t[:, None]).mean())',
           "MIA-Efficacy = share predicted member instead of non-member (sklearn path)",
           ("tests/eval/test_attacks.py",)),
    Mutant("mia-efficacy-members-random", U + "eval/metrics/mia_svc.py", "members = getattr(retain, feature)[:n].numpy()",
           "members = getattr(retain, feature)[-n:].numpy()",
           "shadow members = the last |T| retain samples instead of the first |T| (SalUn's Subset(range))",
           ("tests/eval/test_attacks.py",)),
    Mutant("phi-sign", U + "eval/signals.py", "return (z_y - torch.logsumexp(others, dim=1)).cpu()",
           "return (torch.logsumexp(others, dim=1) - z_y).cpu()", "LiRA's logit-scaled confidence negated",
           ("tests/eval/test_attacks.py", "-k", "signal or scaled")),
    Mutant("lira-offline-two-sided", U + "eval/lira.py", "return stats.norm.logcdf(phi, self.mu_out, self.sd_out)",
           "return stats.norm.logsf(phi, self.mu_out, self.sd_out)",
           "offline LiRA tests the wrong tail", ("tests/eval/test_shadow.py", "-k", "gaussian or balanced_masks")),
    Mutant("lira-online-sign", U + "eval/lira.py",
           "return stats.norm.logpdf(phi, self.mu_in, self.sd_in) - stats.norm.logpdf(phi, self.mu_out, self.sd_out)",
           "return stats.norm.logpdf(phi, self.mu_out, self.sd_out) - stats.norm.logpdf(phi, self.mu_in, self.sd_in)",
           "online likelihood ratio inverted", ("tests/eval/test_shadow.py", "-k", "gaussian or balanced_masks")),
    Mutant("lira-masks-unbalanced", U + "eval/lira.py", "return order < n_models // 2",
           "return order <= n_models // 2", "keep-masks put each example IN for n/2 + 1 shadows",
           ("tests/eval/test_shadow.py", "-k", "gaussian or balanced_masks")),
    Mutant("ulira-decision-flipped", U + "eval/shadow.py",
           "accs.append(((score_u > 0).sum() + (score_r <= 0).sum()) / (2 * f.sum()))",
           "accs.append(((score_u > 0).sum() + (score_r > 0).sum()) / (2 * f.sum()))",
           "U-LiRA accuracy counts retrained targets called 'unlearned' as correct",
           ("tests/eval/test_ulira.py::test_perfect_separation_by_hand",
            "tests/eval/test_ulira.py::test_null_intervals_cover_half_and_a_signal_is_detected")),
    Mutant("ulira-targets-in-fit", U + "eval/shadow.py", "sh = np.arange(pool.n) < pool.n - n_targets",
           "sh = np.arange(pool.n) >= 0",
           "U-LiRA fits its Gaussians on the targets too (leakage: targets look like their own shadows)",
           ("tests/eval/test_ulira.py::test_null_intervals_cover_half_and_a_signal_is_detected",)),
    Mutant("ulira-interval-normal", U + "eval/shadow.py",
           "half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))",
           "half = float(1.96 * x.std(ddof=1) / np.sqrt(len(x)))",
           "normal instead of Student-t interval over a handful of target pairs (too narrow)",
           ("tests/eval/test_ulira.py::test_mean_interval_known_values",)),
    # ------------------------------------------------------------------ training / splits / masks
    Mutant("keep-best-first-epoch", U + "core/train.py",
           "return acc > best_acc or (acc == best_acc and not loss > best_loss)", "return acc > best_acc",
           "keep_best keeps the first epoch reaching the best accuracy (issue #16)",
           ("tests/core/test_keep_best.py",)),
    Mutant("keep-best-earlier-on-full-tie", U + "core/train.py",
           "return acc > best_acc or (acc == best_acc and not loss > best_loss)",
           "return acc > best_acc or (acc == best_acc and loss < best_loss)",
           "ties on accuracy and loss go to the earlier epoch", ("tests/core/test_keep_best.py",)),
    Mutant("forget-random-with-replacement", U + "core/data/splits.py", "mask[rng.choice(n, count, replace=False)] = True",
           "mask[rng.choice(n, count, replace=True)] = True",
           "random forget set drawn with replacement (fewer than the requested count)",
           ("tests/core/test_data.py",)),
    Mutant("salun-mask-smallest", U + "unlearn/masks.py", "order = torch.argsort(flat, descending=True, stable=True)",
           "order = torch.argsort(flat, descending=False, stable=True)",
           "SalUn's saliency mask keeps the smallest gradients", ("tests/unlearn/test_mechanics.py", "-k", "mask")),
    # ------------------------------------------------------------------ unlearning methods (issue #16 names)
    Mutant("scar-farthest", U + "unlearn/classstats.py", 'return distances.masked_fill(own, float("inf")).argmin(1)',
           'return distances.masked_fill(own, float("-inf")).argmax(1)',
           "SCAR pulls towards the farthest wrong class instead of the nearest (issue #16)",
           ("tests/unlearn", "-k", "scar or nearest"),
           note="issue #16 mutant; the killing test (a hand-computed distance matrix) is in tests/unlearn/test_mechanisms.py "
                "work, not on this branch, where only 'never the own label' is checked"),
    Mutant("rl-forbid-true", U + "unlearn/loops.py",
           "return torch.randint(0, num_classes, y.shape, generator=generator).to(y.device)",
           "return (y + torch.randint(1, num_classes, y.shape, generator=generator).to(y.device)) % num_classes",
           "random labels never equal the true label (issue #16: SalUn's RL draws over all classes)",
           ("tests/unlearn", "-k", "random_label or relabel or random_labels"),
           note="issue #16 mutant; the killing test (a pinned seeded draw, share of true labels ~ 1/C) is in tests/unlearn/test_mechanisms.py"),
    Mutant("scar-teacher-rows-kept", U + "unlearn/scar.py", "keep = ~torch.isin(logits.argmax(1), gone)",
           "keep = torch.ones(len(logits), dtype=torch.bool, device=logits.device)",
           "SCAR's selective teacher keeps rows that predict a forgotten class (issue #16)",
           ("tests/unlearn", "-k", "scar or selective"),
           note="issue #16 mutant; the killing test (selective_teacher on hand-made logits) is in tests/unlearn/test_mechanisms.py"),
    Mutant("scar-teacher-logits-kept", U + "unlearn/scar.py", "kept[:, gone] = kept.min()", "pass",
           "SCAR's selective teacher leaves the forgotten classes' logits in place (issue #16)",
           ("tests/unlearn", "-k", "scar or selective"),
           note="issue #16 mutant; the killing test (selective_teacher on hand-made logits) is in tests/unlearn/test_mechanisms.py"),
    Mutant("scrub-no-t-squared", U + "unlearn/losses.py",
           "return kl_from_logits(student_logits / t, teacher_logits / t) * t * t",
           "return kl_from_logits(student_logits / t, teacher_logits / t) * t",
           "SCRUB's DistillKL without the T^2 factor (issue #16)", ("tests/unlearn", "-k", "scrub or distill"),
           note="issue #16 mutant; the killing test (distill_kl unit test) is in tests/unlearn/test_mechanisms.py"),
    Mutant("scrub-max-step-sign", U + "unlearn/scrub.py", "return -distill_kl(student_logits, teacher_logits, temperature)",
           "return distill_kl(student_logits, teacher_logits, temperature)", "SCRUB's max step descends instead of ascending the KL (issue #16)",
           ("tests/unlearn", "-k", "scrub or distill"), note="issue #16 mutant; the killing test (SCRUB step-sign unit tests) is in tests/unlearn/test_mechanisms.py"),
    Mutant("scrub-min-step-sign", U + "unlearn/scrub.py",
           "return gamma * F.cross_entropy(student_logits, y) + alpha * distill_kl(student_logits, teacher_logits, temperature)",
           "return gamma * F.cross_entropy(student_logits, y) - alpha * distill_kl(student_logits, teacher_logits, temperature)",
           "SCRUB's min step pushes the student away from the teacher on the retain set (issue #16)",
           ("tests/unlearn", "-k", "scrub or distill"), note="issue #16 mutant; the killing test (SCRUB step-sign unit tests) is in tests/unlearn/test_mechanisms.py"),
    # ------------------------------------------------------------------ attacks / robust accuracy
    Mutant("apgd-ce-rho", U + "robust/aa/engine.py", "loss=name[5:], eot_iter=eot, rho=0.75",
           "loss=name[5:], eot_iter=eot, rho=0.5",
           "APGD-CE's step-size halving checkpoint rule with rho 0.5 instead of 0.75 (issue #16)",
           ("tests/robust/test_autoattack.py", "tests/robust/test_autoattack_at.py"),
           note="issue #16 mutant; the killing test (image-level parity with pyautoattack, max abs difference <= 1e-6) is in tests/robust/test_autoattack_at.py"),
    Mutant("apgd-momentum", U + "robust/aa/apgd.py", "a = 0.75 if i > 0 else 1.0", "a = 0.5 if i > 0 else 1.0",
           "APGD's momentum 0.75 changed to 0.5", ("tests/robust/test_autoattack.py",)),
    Mutant("robust-acc-clean-denominator", U + "robust/evaluate.py",
           "robust_acc=100.0 * float(robust.float().mean()),",
           "robust_acc=100.0 * float(robust.sum()) / max(1, int(clean.sum())),",
           "robust accuracy divided by the clean-correct points instead of all n (issue #16)",
           ("tests/robust/test_autoattack_at.py", "tests/robust/test_attacks_contract.py"),
           note="issue #16 mutant; the killing test (exact robust accuracy with clean mistakes) is in tests/robust/test_autoattack_at.py"),
    # ------------------------------------------------------------------ metamorphic properties (issue #19)
    Mutant("eval-mode-top-flag", U + "core/runtime.py", "            m.training = flag",
           "            m.training = modes[0][1]",
           "a model handed over in train mode with frozen BatchNorm comes back with every module training "
           "(predict() restored only the top flag; a real bug found by the metamorphic tests)",
           ("tests/eval/test_metamorphic.py", "-k", "train_mode")),
    Mutant("bal-acc-order", U + "eval/crossfit.py", "m = np.sort(np.asarray(member, dtype=np.float64).ravel())",
           "m = np.asarray(member, dtype=np.float64).ravel()",
           "cross-fitted balanced accuracy depends on the order of the points (a real bug found by the "
           "metamorphic tests: a shuffled forget set changed bal_acc)",
           ("tests/eval/test_metamorphic.py", "-k", "permuting")),
    Mutant("robust-subset-first-n", U + "robust/evaluate.py",
           "return torch.randperm(n_total, generator=gen)[:n].sort().values", "return torch.arange(n)",
           "robust_n attacks the first n points (the first classes of class-ordered data; issue #19)",
           ("tests/eval/test_metamorphic.py", "-k", "subset")),
    Mutant("robust-subset-seed-ignored", U + "robust/evaluate.py", "gen = torch.Generator().manual_seed(seed)",
           "gen = torch.Generator().manual_seed(0)", "robust_n subsets ignore the seed (issue #19)",
           ("tests/eval/test_metamorphic.py", "-k", "seed")),
    Mutant("robust-clean-in-train-mode", U + "robust/evaluate.py", "with torch.no_grad(), eval_mode(model):",
           "with torch.no_grad():",
           "robust accuracy of a model handed over in train mode judged with dropout on (issue #19)",
           ("tests/eval/test_metamorphic.py", "-k", "train_mode")),
    Mutant("saliency-mask-mode-top-flag", U + "unlearn/masks.py", "            m.training = flag",
           "            m.training = modes[0][1]",
           "SalUn's saliency mask hands a model back with every module in the top module's mode (a frozen "
           "BatchNorm starts updating again; found after the random run, same bug as predict())",
           ("tests/unlearn/test_mechanics.py", "-k", "own_mode")),
    Mutant("rl-seed-fixed", U + "unlearn/random_label.py", "gen = torch.Generator().manual_seed(config.seed)",
           "gen = torch.Generator().manual_seed(0)", "random labelling ignores the run's seed (issue #19)",
           ("tests/unlearn/test_seeds.py",)),
    Mutant("pgd-descent", U + "robust/adversarial.py",
           'return alpha * (grad.sign() if norm == "Linf" else grad / _flat_norm(grad))',
           'return -alpha * (grad.sign() if norm == "Linf" else grad / _flat_norm(grad))',
           "PGD's inner maximisation (adversarial training, --adv-retain) steps down the loss",
           ("tests/robust/test_adversarial.py",)),
    Mutant("eval-variance-unchecked", U + "eval/engine.py",
           '("lira_variance", ("auto", "per_example", "global"))', '("lira_variance", ("auto", "per_example", "global", "Auto"))',
           "an unknown LiRA variance mode accepted by the evaluator's config and refused only after the predictions "
           "(found by the random run of eval/metrics/ulira.py)",
           ("tests/eval/test_engine.py", "-k", "config_validation")),
]


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return [f for f in out if f and not f.startswith((".venv", "mlruns", "mlartifacts")) and (ROOT / f).is_file()]


def _copy_tree(dest: Path) -> None:
    for f in _tree_files():
        target = dest / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, target)


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    tail = (r.stdout + r.stderr).strip().splitlines()[-1:] or [""]
    return ("pass" if r.returncode == 0 else "fail"), time.perf_counter() - t0, tail[0]


def run(mutants: list[Mutant], timeout: float) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        baseline: dict[tuple[str, ...], str] = {}
        for m in mutants:
            path = copy / m.file
            text = path.read_text() if path.is_file() else None
            count = text.count(m.original) if text is not None else 0
            row = {"mutant": m, "result": "", "seconds": 0.0, "detail": ""}
            if count != 1:
                row["result"] = "skipped"
                row["detail"] = "file missing" if text is None else f"original snippet found {count} times"
                results.append(row)
                print(f"{m.id:34s} skipped ({row['detail']})", flush=True)
                continue
            if m.tests not in baseline:
                status, secs, tail = _pytest(copy, m.tests, timeout)
                baseline[m.tests] = status
                print(f"{'baseline ' + ' '.join(m.tests):34s} {status} ({secs:.0f} s) {tail}", flush=True)
            if baseline[m.tests] != "pass":
                row["result"] = "baseline-failed"
                results.append(row)
                continue
            try:
                path.write_text(text.replace(m.original, m.replacement))
                status, secs, tail = _pytest(copy, m.tests, timeout)
            finally:
                path.write_text(text)
            row.update(result={"pass": "survived", "fail": "killed", "timeout": "killed (timeout)"}[status],
                       seconds=secs, detail=tail)
            results.append(row)
            print(f"{m.id:34s} {row['result']} ({secs:.0f} s)", flush=True)
    return results


def previous_results(out: Path, skip: set[str]) -> list[dict]:
    """With ``--only``, the other mutants keep their rows from the last full run's table."""
    rows = {}
    if out.is_file():
        for line in out.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 5 and cells[0].startswith("`") and cells[0] != "`mutant`":
                rows[cells[0].strip("`")] = (cells[-2], float(cells[-1]) if cells[-1].replace(".", "").isdigit() else 0.0)
    return [{"mutant": m, "result": rows[m.id][0], "seconds": rows[m.id][1], "detail": ""}
            for m in M if m.id in rows and m.id not in skip]


def write_doc(results: list[dict], out: Path) -> tuple[int, int]:
    killed = sum(r["result"].startswith("killed") for r in results)
    survived = sum(r["result"] == "survived" for r in results)
    judged = killed + survived
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    branch = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    score = f"{killed}/{judged} = {100 * killed / judged:.0f} %" if judged else "n/a"
    lines = [
        "# Mutation check",
        "",
        "`make mutate` (= `python tools/mutate.py`, not run in CI) applies each curated mutant below to a",
        "scratch copy of the tree (one edit: an exact original snippet replaced), runs only that mutant's",
        "tests, and records whether they fail (*killed*) or pass (*survived*). The mutants sit on the lines",
        "that decide published numbers: metrics, masks, method losses, attack schedules, splits. A mutant",
        "whose original snippet is no longer found is *skipped* (re-target it); a test selection that fails",
        "on the unmutated tree marks its mutants *baseline-failed*. Add a mutant to `M` in",
        "`tools/mutate.py` whenever a bug slips past the tests. The method and attack mutants run `-k`",
        "selections (e.g. `tests/unlearn -k \"scar or selective\"`), so tests added under those names count.",
        "",
        f"Last run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, branch `{branch}` at `{sha}`.",
        f"**Score: {score} killed** ({sum(r['result'] == 'skipped' for r in results)} skipped, "
        f"{sum(r['result'] == 'baseline-failed' for r in results)} baseline-failed).",
        "",
        "| mutant | file | the bug | result | s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        m = r["mutant"]
        why = m.why.replace("|", "\\|")  # a pipe would end the table cell
        lines.append(f"| `{m.id}` | `{m.file.removeprefix(U)}` | {why} | {r['result']} | {r['seconds']:.0f} |")
    surv = [r for r in results if r["result"] in ("survived", "skipped", "baseline-failed")]
    if surv:
        lines += ["", "## Survivors, skipped and baseline-failed mutants", ""]
        for r in surv:
            m = r["mutant"]
            why = m.note or "no note: add a test that kills it or explain here"
            extra = f" ({r['detail']})" if r["detail"] and r["result"] != "survived" else ""
            lines.append(f"- `{m.id}` — {r['result']}{extra}: {why}.")
    # The random run's section (tools/mutate_random.py) follows the curated list; keep it.
    marker = "## Random mutation run"
    old = out.read_text() if out.is_file() else ""
    tail = ("\n" + marker + old.split(marker, 1)[1]) if marker in old else ""
    out.write_text("\n".join(lines) + "\n" + tail)
    return killed, judged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per test run")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "mutation.md")
    args = ap.parse_args()
    mutants = M
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m.id for m in M})
        if unknown:
            print(f"unknown mutant(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in M if m.id in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.id:34s} {m.file:40s} {m.why}")
        return 0
    results = run(mutants, args.timeout)
    if args.only:
        done = {r["mutant"].id: r for r in results + previous_results(args.out, {m.id for m in mutants})}
        results = [done[m.id] for m in M if m.id in done]
    killed, judged = write_doc(results, args.out)
    print(f"score: {killed}/{judged} killed; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
