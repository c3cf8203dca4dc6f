"""Hand-made MLflow runs with known metrics, shaped like the ones a study logs (contract C)."""

from __future__ import annotations

import time
import uuid

import numpy as np


def unique_experiment(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _curves(strength: float) -> dict:
    """A threshold attack's and the MIA-Efficacy SVC's ROC as the engine stores them: 180 forget
    images against 40 test images of the forgotten class (FPR < 1/40 is undefined)."""
    fpr = np.linspace(0, 1, 41)
    counts = {"n_members": [180], "n_nonmembers": [40]}
    return {"mia/loss/forget_test": {"fpr": fpr.tolist(), "tpr": (fpr ** (1 - strength)).tolist(), **counts},
            "mia/svc_confidence/forget_test": {"fpr": fpr.tolist(), "tpr": (fpr ** (1 - strength / 2)).tolist(),
                                               "op_fpr": [0.1], "op_tpr": [0.1 ** (1 - strength / 2)], **counts}}


def _per_class(acc: float, forgotten: int = 3) -> list[dict]:
    return [{"class": c, "split": "test", "acc": (acc if c != forgotten else 100 - acc)} for c in range(10)]


def log_study(uri: str, experiment: str, records: list[dict], *, study: str = "hand-made", failed: list[dict] = ()) -> str:
    """Log a study parent run with one child per record: {method, forget, seed, kind, metrics}.

    Returns the parent run id. Children carry report.json artifacts with MIA curves and per-class
    accuracies so the report's plots have data.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    parent = client.create_run(exp_id, run_name=f"study-{study}", tags={"kind": "study", "study": study, "study_id": "abc123"})
    pid = parent.info.run_id
    for rec in [*records, *failed]:
        kind = rec.get("kind", "unlearn")
        tags = {
            "mlflow.parentRunId": pid, "kind": kind, "method": rec["method"], "forget": rec["forget"],
            "seed": str(rec["seed"]), "dataset": "digits", "model": "cnn", "git_sha": "deadbeef",
        }
        if rec.get("variant"):
            tags["variant"] = rec["variant"]
        if "error" in rec:
            tags["error"] = rec["error"]
        child = client.create_run(exp_id, run_name=f"{rec['method']}-{rec['seed']}", tags=tags)
        cid = child.info.run_id
        now = int(time.time() * 1000)
        if rec.get("metrics"):
            client.log_batch(cid, metrics=[Metric(k, float(v), now, 0) for k, v in rec["metrics"].items()])
            acc = rec["metrics"].get("test_acc", 90.0)
            client.log_dict(cid, {"values": rec["metrics"], "curves": _curves(rec["metrics"].get("ua", 50) / 200),
                                  "per_class": _per_class(acc),
                                  "config": {"eval": {"robustness": ["pgd"], "norm": "Linf", "eps": 8 / 255}}},
                            "report.json")
        client.set_terminated(cid, "FAILED" if "error" in rec else "FINISHED")
    client.set_terminated(pid, "FINISHED")
    return pid


# Known metrics: 3 seeds × (retrain, original, salun, l1_sparse) on class:3.
BASE = {
    "retrain": [dict(ua=100.0, retain_acc=99.5, test_acc=97.25, mia_efficacy=100.0, avg_gap=0.0, rte_seconds=12.5,
                     **{"robust/test/pgd": 30.0, "clean/test": 97.25}),
                dict(ua=100.0, retain_acc=99.75, test_acc=97.0, mia_efficacy=100.0, avg_gap=0.0, rte_seconds=13.0,
                     **{"robust/test/pgd": 31.5, "clean/test": 97.0}),
                dict(ua=100.0, retain_acc=99.25, test_acc=97.5, mia_efficacy=100.0, avg_gap=0.0, rte_seconds=12.0,
                     **{"robust/test/pgd": 29.0, "clean/test": 97.5})],
    "original": [dict(ua=0.5, retain_acc=99.9, test_acc=98.0, mia_efficacy=2.0, avg_gap=49.0, rte_seconds=0.0,
                      **{"robust/test/pgd": 33.0, "clean/test": 98.0})] * 3,
    "salun": [dict(ua=99.0, retain_acc=98.5, test_acc=96.125, mia_efficacy=99.5, avg_gap=0.75, rte_seconds=1.5,
                   **{"robust/test/pgd": 25.0, "clean/test": 96.125}),
              dict(ua=97.5, retain_acc=98.0, test_acc=95.5, mia_efficacy=98.0, avg_gap=1.25, rte_seconds=1.75,
                   **{"robust/test/pgd": 24.0, "clean/test": 95.5}),
              dict(ua=100.0, retain_acc=98.75, test_acc=96.0, mia_efficacy=100.0, avg_gap=0.5, rte_seconds=1.25,
                   **{"robust/test/pgd": 26.5, "clean/test": 96.0})],
    "l1_sparse": [dict(ua=90.0, retain_acc=97.0, test_acc=94.0, mia_efficacy=93.0, avg_gap=4.0, rte_seconds=2.0,
                       **{"robust/test/pgd": 20.0, "clean/test": 94.0}),
                  dict(ua=92.5, retain_acc=96.5, test_acc=93.75, mia_efficacy=95.0, avg_gap=3.5, rte_seconds=2.5,
                       **{"robust/test/pgd": 21.0, "clean/test": 93.75}),
                  dict(ua=91.0, retain_acc=97.5, test_acc=94.5, mia_efficacy=94.0, avg_gap=3.0, rte_seconds=2.25,
                       **{"robust/test/pgd": 22.0, "clean/test": 94.5})],
}


# The n behind each proportion, as the engine logs them (n/<key>): forget 180, retain 1200,
# test 360 images, 100 points under attack.
COUNTS = {"n/ua": 180, "n/forget_acc": 180, "n/retain_acc": 1200, "n/test_acc": 360, "n/test_retained_acc": 324,
          "n/mia_efficacy": 180, "n/robust/test/pgd": 100, "n/clean/test": 100}


def records(base: dict = BASE, forget: str = "class:3", counts: dict | None = COUNTS) -> list[dict]:
    """One record per (method, seed), with the n behind each proportion (``counts``) and, as the
    engine logs them, ``gap/<key>`` = |value − the same seed's retrain value| on non-retrain runs."""
    out = []
    retrain = base.get("retrain", [])
    for method, per_seed in base.items():
        kind = method if method in ("retrain", "original") else "unlearn"
        for seed, metrics in enumerate(per_seed):
            logged = {**dict(metrics), **{k: v for k, v in (counts or {}).items() if k[2:] in metrics}}
            if method != "retrain" and seed < len(retrain):
                logged.update({f"gap/{k}": abs(v - retrain[seed][k]) for k, v in metrics.items()
                               if k in ("ua", "retain_acc", "test_acc", "test_retained_acc", "mia_efficacy")
                               and k in retrain[seed]})
            out.append({"method": method, "forget": forget, "seed": seed, "kind": kind, "metrics": logged})
    return out
