"""Top-1 accuracies per split, UA and the per-class table.

Accuracies are percentages on clean (un-augmented) images, model in eval mode, as in the
SalUn / Unlearn-Sparse ``validate`` after unlearning. RA = ``retain_acc``, TA = ``test_acc``
(for class-wise specs the papers' TA is ``test_retained_acc``).
"""

from __future__ import annotations

from unlearnbench.eval.metrics.base import EvalContext, MetricOutput, register_metric
from unlearnbench.eval.paired import Outcomes

_SPLITS = {
    # split: (direction, needs, summary)
    "forget": ("reference", (), "accuracy on the forget set (%)"),
    "retain": ("higher", (), "accuracy on the retain set, RA (%)"),
    "val": ("higher", (), "accuracy on the validation split (%)"),
    "test": ("higher", (), "accuracy on the test set, TA (%)"),
    "test_retained": ("higher", ("classwise",), "test accuracy without the forgotten classes (%)"),
    "test_forgotten": ("reference", ("classwise",), "test accuracy on the forgotten classes only (%)"),
}


def _accuracy_metric(split: str):
    def metric(ctx: EvalContext) -> MetricOutput:
        preds = ctx.preds(split)
        if preds is None:
            return MetricOutput()
        key = f"{split}_acc"
        return MetricOutput(values={key: preds.accuracy}, counts={f"n/{key}": len(preds)},
                            outcomes={key: Outcomes.of(preds.correct, preds.idx)})

    metric.__name__ = f"{split}_acc"
    return metric


for _split, (_direction, _needs, _summary) in _SPLITS.items():
    register_metric(f"{_split}_acc", direction=_direction, needs=_needs, summary=_summary)(_accuracy_metric(_split))


@register_metric("ua", direction="reference", requires=("forget_acc",), stage=1,
                 summary="unlearning accuracy UA = 100 - forget accuracy (%)")
def ua(ctx: EvalContext) -> MetricOutput:
    if "forget_acc" not in ctx.values:
        return MetricOutput()
    n = ctx.counts.get("n/forget_acc")
    forget = ctx.outcomes.get("forget_acc")
    return MetricOutput(values={"ua": 100.0 - ctx.values["forget_acc"]}, counts={} if n is None else {"n/ua": n},
                        outcomes={} if forget is None else {"ua": forget.invert()})


@register_metric("per_class_acc", direction="reference", gap=False, keys="(table) per_class",
                 summary="per-class accuracy on forget / retain / test (+ the reference's)")
def per_class_acc(ctx: EvalContext) -> MetricOutput:
    names = ctx.data.info.class_names
    rows = []
    for split in ("forget", "retain", "test"):
        preds = ctx.preds(split)
        if preds is None:
            continue
        ref = ctx.preds(split, "reference")
        for c in range(ctx.data.num_classes):
            sel = preds.labels == c
            n = int(sel.sum())
            if n == 0:
                continue
            row = {
                "split": split,
                "class": c,
                "name": names[c] if c < len(names) else str(c),
                "n": n,
                "acc": 100.0 * preds.correct[sel].double().mean().item(),
            }
            if ref is not None:
                row["reference_acc"] = 100.0 * ref.correct[ref.labels == c].double().mean().item()
            rows.append(row)
    return MetricOutput(per_class=rows)
