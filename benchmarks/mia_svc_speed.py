"""MIA-Efficacy's SVC: the platform's solvers vs scikit-learn on the raw points, side by side.

The SVC is the one CPU-bound part of the evaluation (both paths of ``eval_throughput.py`` fit it
on the CPU, whatever the device). This times ``svc_attack`` with each solver on MIA-shaped inputs
of CIFAR-10 size (|test| = 10,000 non-members, the first 10,000 retain samples as members,
4,500 forget samples) and prints the time ratio to the papers' code path (``sklearn``: SVC on the
raw points) and how many forget points each solver classifies differently. As the oracle for those
differences it also fits scikit-learn at ``tol=1e-6`` (libsvm's default stops at 1e-3): forget points
lying on the decision boundary come out as that tighter optimum has them.

Inputs: true-class confidences drawn to look like a partly trained model (members more confident
than non-members, overlapping) and like a well-trained one (60 % / 30 % saturated at exactly 1.0,
as float32 softmax produces), the softmax entropy (a feature spanning [0, ln 10]) and a modified
entropy whose misclassified points spread it over [0, 15].

    python benchmarks/mia_svc_speed.py            # n = 10000
    python benchmarks/mia_svc_speed.py --n 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.svm import SVC

from unlearnbench.eval.metrics.mia_svc import svc_attack


def inputs(kind: str, n: int, n_forget: int, rng: np.random.Generator):
    if kind == "confidence, partly trained":
        return rng.beta(5, 1.2, n), rng.beta(4, 1.5, n), rng.beta(5, 1.3, n_forget)
    if kind == "confidence, saturated":
        def draw(p_one, a, b, size):
            return np.where(rng.random(size) < p_one, 1.0, rng.beta(a, b, size).astype(np.float32))
        return draw(0.6, 30, 1, n), draw(0.3, 8, 2, n), draw(0.5, 20, 2, n_forget)
    if kind == "entropy":
        cap = np.log(10)
        return (np.minimum(rng.gamma(0.6, 0.3, n), cap), np.minimum(rng.gamma(1.5, 0.5, n), cap),
                np.minimum(rng.gamma(0.7, 0.3, n_forget), cap))
    if kind == "modified entropy (wide)":
        def draw(size, err_rate, scale):  # near 0 when right; the misclassified spread up to 15
            v = rng.gamma(0.3, scale, size)
            wrong = rng.random(size) < err_rate
            v[wrong] = rng.uniform(0.5, 15, wrong.sum())
            return v
        return draw(n, 0.0, 0.01), draw(n, 0.07, 0.1), draw(n_forget, 0.01, 0.02)
    raise ValueError(kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="members = non-members = n")
    ap.add_argument("--forget", type=int, default=4500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.n} members, {args.n} non-members, {args.forget} forget points; times in seconds")
    print(f"{'input':28s} {'sklearn':>8s} {'libsvm':>8s} {'lowrank':>8s} {'ratio':>7s}   "
          "MIA-Efficacy (sklearn | libsvm | lowrank || sklearn tol=1e-6)")
    for kind in ("confidence, partly trained", "confidence, saturated", "entropy", "modified entropy (wide)"):
        members, nonmembers, forget = inputs(kind, args.n, args.forget, rng)
        seconds, scores = {}, {}
        for solver in ("sklearn", "libsvm", "lowrank"):
            t0 = time.perf_counter()
            scores[solver] = 100 * svc_attack(members, nonmembers, forget, solver=solver)
            seconds[solver] = time.perf_counter() - t0
        tight = SVC(C=3, gamma="auto", kernel="rbf", tol=1e-6).fit(
            np.r_[members, nonmembers][:, None], np.r_[np.ones(len(members)), np.zeros(len(nonmembers))])
        oracle = 100 * (1 - tight.predict(forget[:, None]).mean())
        flips = {s: round(abs(scores[s] - scores["sklearn"]) * args.forget / 100) for s in ("libsvm", "lowrank")}
        print(f"{kind:28s} {seconds['sklearn']:8.2f} {seconds['libsvm']:8.2f} {seconds['lowrank']:8.3f} "
              f"{seconds['sklearn'] / seconds['lowrank']:6.0f}x   {scores['sklearn']:.2f} | {scores['libsvm']:.2f} | "
              f"{scores['lowrank']:.2f} || {oracle:.2f}  (net forget points off sklearn: libsvm {flips['libsvm']}, "
              f"lowrank {flips['lowrank']})")


if __name__ == "__main__":
    main()
