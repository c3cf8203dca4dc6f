"""The one train/val split, forget specs, and the forget/retain/test sets a method and the evaluator read.

Every split is derived from one explicit ``split_seed`` so the original model, the forget/retain
split and the retrained reference always see the same training set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from unlearnbench.core.data import fingerprint
from unlearnbench.core.data.selection import load_dataset
from unlearnbench.core.data.types import DatasetInfo, DataSource, RawDataset, TensorSet
from unlearnbench.core.errors import DataError


@dataclass(frozen=True)
class Splits:
    train: TensorSet
    val: TensorSet
    test: TensorSet
    info: DatasetInfo
    split_seed: int
    val_fraction: float
    # What the split was cut from (see ``core.data.fingerprint``); checkpoints record it.
    fingerprint: dict | None = None


def split_train_val(raw: RawDataset, split_seed: int, val_fraction: float = 0.1) -> Splits:
    """Hold out ``val_fraction`` of every class as validation, chosen by ``split_seed``.

    This is the reference protocol (10 % per class); it is the one and only split every later
    step reuses.
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    y = raw.train.y.cpu().numpy()
    rng = np.random.default_rng(split_seed)
    val_mask = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n_val = int(val_fraction * len(members))
        if n_val:
            val_mask[rng.choice(members, n_val, replace=False)] = True
    return Splits(
        raw.train.select(~val_mask, "train"),
        raw.train.select(val_mask, "val"),
        raw.test,
        raw.info,
        split_seed,
        val_fraction,
        fingerprint.compute(raw, split_seed, val_fraction, int(val_mask.sum())),
    )


# ----------------------------------------------------------------------------- forget specs


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget spec: ``random:0.1``, ``random:450``, ``class:3,5``, ``subclass:S/F``, ``indices:FILE``."""

    kind: str
    text: str
    fraction: float | None = None
    count: int | None = None
    classes: tuple[str, ...] = ()
    path: str | None = None

    @property
    def classwise(self) -> bool:
        return self.kind in ("class", "subclass")

    def __str__(self) -> str:
        return self.text


FORGET_KINDS = ("random", "class", "subclass", "indices")


def parse_forget_spec(text: str) -> ForgetSpec:
    text = text.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in FORGET_KINDS or not arg.strip():
        raise DataError(
            f"Bad forget spec {text!r}: use random:FRACTION, random:COUNT, class:C[,C2], "
            "subclass:SUPER/FINE or indices:FILE."
        )
    arg = arg.strip()
    if kind == "random":
        try:
            if any(ch in arg for ch in ".eE"):
                frac = float(arg)
                if not 0 < frac < 1:
                    raise DataError(f"Bad forget spec {text!r}: a fraction must lie strictly between 0 and 1.")
                return ForgetSpec("random", text, fraction=frac)
            count = int(arg)
        except ValueError:
            raise DataError(f"Bad forget spec {text!r}: random takes a fraction (0.1) or a count (450).") from None
        if count < 1:
            raise DataError(f"Bad forget spec {text!r}: the count must be at least 1.")
        return ForgetSpec("random", text, count=count)
    if kind == "class":
        classes = tuple(c.strip() for c in arg.split(",") if c.strip())
        if len(set(classes)) != len(classes):
            raise DataError(f"Bad forget spec {text!r}: a class is listed twice.")
        return ForgetSpec("class", text, classes=classes)
    if kind == "subclass":
        sup, slash, fine = arg.partition("/")
        if not slash or not sup.strip() or not fine.strip():
            raise DataError(f"Bad forget spec {text!r}: write subclass:SUPER/FINE (names or indices).")
        return ForgetSpec("subclass", text, classes=(sup.strip(), fine.strip()))
    return ForgetSpec("indices", text, path=arg)


def _class_index(token: str, names: tuple[str, ...], n: int, what: str) -> int:
    if token.lstrip("-").isdigit():
        c = int(token)
        if not 0 <= c < n:
            raise DataError(f"{what} {c} is out of range: this dataset has {what}es 0..{n - 1}.")
        return c
    if token in names:
        return names.index(token)
    raise DataError(f"Unknown {what} {token!r}; use an index 0..{n - 1} or one of: {', '.join(names)}.")


@dataclass(frozen=True)
class UnlearnData:
    """Everything an unlearning method or the evaluator may read, plus what was forgotten.

    ``test_retained`` / ``test_forgotten`` are set for class-wise specs: the test set without and
    with only the forgotten class(es).
    """

    forget: TensorSet
    retain: TensorSet
    val: TensorSet
    test: TensorSet
    num_classes: int
    info: DatasetInfo
    spec: ForgetSpec
    split_seed: int
    forget_classes: tuple[int, ...] = ()
    test_retained: TensorSet | None = None
    test_forgotten: TensorSet | None = None
    extras: dict = field(default_factory=dict)

    # A user's own data, checked: ``UnlearnData.from_tensors / from_datasets / from_dataset`` are
    # defined in core/data/user.py, which builds on this module, and attached there.

    def _summary(self) -> list[tuple[str, str]]:
        x = self.test.x
        shape = "x".join(str(d) for d in x.shape[1:])
        rows = [("data", f"{self.info.name}: {shape} uint8 images on {x.device}, {self.num_classes} classes"),
                ("forget", f"{self.spec.text} (split seed {self.split_seed})"
                 + (f", classes {list(self.forget_classes)}" if self.forget_classes else ""))]
        rows += [(name, f"{len(s)} images") for name, s in (("forget set", self.forget), ("retain", self.retain),
                                                           ("val", self.val), ("test", self.test))]
        if self.test_retained is not None:
            rows.append(("test, kept / forgotten classes", f"{len(self.test_retained)} / {len(self.test_forgotten)}"))
        norm = self.info.normalization
        rows.append(("model input", "normalised with mean {}, std {}".format(*norm) if norm else
                     "[0, 1] images as they are"))
        if self.extras:
            rows.append(("extras", ", ".join(sorted(self.extras))))
        return rows

    def __repr__(self) -> str:
        return "UnlearnData\n" + "\n".join(f"  {k}: {v}" for k, v in self._summary())

    def _repr_html_(self) -> str:
        import html

        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self._summary())
        return f"<div><b>UnlearnData</b><table>{body}</table></div>"

    def to(self, device: torch.device | str) -> UnlearnData:
        mv = lambda s: None if s is None else s.to(device)  # noqa: E731
        return replace(
            self, forget=mv(self.forget), retain=mv(self.retain), val=mv(self.val), test=mv(self.test),
            test_retained=mv(self.test_retained), test_forgotten=mv(self.test_forgotten),
        )


def forget_mask(splits: Splits, spec: ForgetSpec) -> np.ndarray:
    """Boolean mask over ``splits.train`` marking the samples to forget."""
    train = splits.train
    info = splits.info
    n = len(train)
    y = train.y.cpu().numpy()
    mask = np.zeros(n, dtype=bool)
    if spec.kind == "random":
        count = spec.count if spec.count is not None else int(round(spec.fraction * n))
        if count >= n:
            raise DataError(f"Forget spec {spec.text!r} would forget all {n} training samples; forget fewer.")
        if count < 1:
            raise DataError(f"Forget spec {spec.text!r} selects no sample of the {n} training samples.")
        # A stream separate from the val split's, derived from the same split_seed.
        rng = np.random.default_rng([splits.split_seed, 1])
        mask[rng.choice(n, count, replace=False)] = True
    elif spec.kind == "class":
        classes = [_class_index(c, info.class_names, info.num_classes, "class") for c in spec.classes]
        mask = np.isin(y, classes)
        if mask.all():
            raise DataError(f"Forget spec {spec.text!r} would forget every class; keep at least one.")
    elif spec.kind == "subclass":
        if train.sub is None:
            raise DataError(
                f"Dataset {info.name!r} has no subclass labels; subclass:SUPER/FINE needs one such as cifar20."
            )
        sup = _class_index(spec.classes[0], info.class_names, info.num_classes, "class")
        fine = _class_index(spec.classes[1], info.subclass_names, len(info.subclass_names), "subclass")
        sub = train.sub.cpu().numpy()
        mask = (y == sup) & (sub == fine)
        if (sub == fine).any() and not (y[sub == fine] == sup).all():
            raise DataError(f"Subclass {spec.classes[1]!r} does not belong to class {spec.classes[0]!r}.")
    else:
        mask = _indices_mask(splits, spec)
    if not mask.any():
        raise DataError(f"Forget spec {spec.text!r} selects no training sample; check it against the dataset.")
    if mask.all():
        raise DataError(f"Forget spec {spec.text!r} would forget all training samples; forget fewer.")
    return mask


def _indices_mask(splits: Splits, spec: ForgetSpec) -> np.ndarray:
    from unlearnbench.core.boundary import read_text

    path = Path(spec.path or "")
    wanted: list[int] = []
    for lineno, line in enumerate(read_text(path, "Deletion-request file").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        # isascii: str.isdigit() also accepts "²" and "٣", which int() then rejects or reads differently.
        if not (line.isascii() and line.isdigit()):
            raise DataError(f"{path}:{lineno}: {line!r} is not a training-set index (one integer per line).")
        wanted.append(int(line))
    if not wanted:
        raise DataError(f"Deletion-request file {path} lists no index.")
    if len(set(wanted)) != len(wanted):
        seen: set[int] = set()
        dup = next(i for i in wanted if i in seen or seen.add(i))
        raise DataError(f"Deletion-request file {path} lists index {dup} more than once.")
    fp = splits.fingerprint or {}
    n_total = int(fp.get("n_source", len(splits.train) + len(splits.val)))
    bad = [i for i in wanted if i >= n_total]
    if bad:
        raise DataError(f"Index {bad[0]} in {path} is out of range: the training set has indices 0..{n_total - 1}.")
    kept = set(splits.train.idx.cpu().tolist()) | set(splits.val.idx.cpu().tolist())
    cut = [i for i in wanted if i not in kept]
    if cut:
        raise DataError(f"Index {cut[0]} in {path} is not in the training subset this run uses ({fingerprint.describe(fp)}); "
                        "drop it or choose another --subset/--per-class.")
    val_idx = set(splits.val.idx.cpu().tolist())
    in_val = [i for i in wanted if i in val_idx]
    if in_val:
        raise DataError(
            f"Index {in_val[0]} in {path} is in the validation split (split_seed={splits.split_seed}), "
            "which the model never trained on; remove it or use another split seed."
        )
    return np.isin(splits.train.idx.cpu().numpy(), np.asarray(wanted))


def make_unlearn_data(splits: Splits, spec: ForgetSpec | str) -> UnlearnData:
    spec = parse_forget_spec(spec) if isinstance(spec, str) else spec
    mask = forget_mask(splits, spec)
    forget = splits.train.select(mask, "forget")
    retain = splits.train.select(~mask, "retain")
    test_retained = test_forgotten = None
    classes: tuple[int, ...] = ()
    if spec.kind == "class":
        classes = tuple(sorted(set(forget.y.cpu().tolist())))
        in_forgotten = torch.isin(splits.test.y, torch.tensor(classes, device=splits.test.y.device))
    elif spec.kind == "subclass":
        classes = tuple(sorted(set(forget.y.cpu().tolist())))
        fine = int(forget.sub[0])
        in_forgotten = splits.test.sub == fine
    if spec.classwise:
        test_retained = splits.test.select(~in_forgotten, "test_retained")
        test_forgotten = splits.test.select(in_forgotten, "test_forgotten")
    return UnlearnData(
        forget=forget, retain=retain, val=splits.val, test=splits.test,
        num_classes=splits.info.num_classes, info=splits.info, spec=spec, split_seed=splits.split_seed,
        forget_classes=classes, test_retained=test_retained, test_forgotten=test_forgotten,
    )


def prepare(
    dataset: str,
    forget: str | ForgetSpec | None = None,
    *,
    split_seed: int = 0,
    val_fraction: float = 0.1,
    source: DataSource | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Splits, UnlearnData | None]:
    """Load ``dataset``, split it with ``split_seed`` and (optionally) apply a forget spec."""
    raw = load_dataset(dataset, source, device)
    splits = split_train_val(raw, split_seed, val_fraction)
    splits = replace(splits, train=splits.train.to(device), val=splits.val.to(device), test=splits.test.to(device))
    return splits, (make_unlearn_data(splits, forget) if forget else None)
