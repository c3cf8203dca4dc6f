"""A user's own data as an ``UnlearnData``: tensors, any ``(image, label)`` dataset, or a
training set plus the indices to delete.

Every input is checked here, once, so a mistake is one sentence (a ``DataError``) and never an
``AttributeError`` deep inside a method. Images may be uint8 (0..255) or floats in [0, 1],
shaped ``(N, C, H, W)`` or ``(N, H, W)``; they are kept as uint8 like every built-in dataset
(floats are rounded to 8 bits, which leaves the usual ``ToTensor()`` images unchanged).
Normalised inputs (negative values, values above 1) are refused: normalisation belongs in the
model (``with_normalization``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unlearnbench.core.data.splits import (
    ForgetSpec,
    Splits,
    UnlearnData,
    make_unlearn_data,
    parse_forget_spec,
    split_train_val,
)
from unlearnbench.core.data.types import DatasetInfo, RawDataset, TensorSet, _channel_stats
from unlearnbench.core.errors import DataError

OOD_KEY = "ood"  # UnlearnData.extras key SCAR reads (unlearn.base.OOD_KEY; core cannot import unlearn)


# ----------------------------------------------------------------------------- checks


def _array(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise DataError(f"The {what} images must be a torch.Tensor or numpy array, not {type(x).__name__}.")


def _check_range(x: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"The {what} images contain NaN or infinite values.")
    lo, hi = float(x.min()), float(x.max())
    if lo >= 0 and hi <= 1:
        return
    if lo >= 0 and hi <= 255:
        raise DataError(
            f"The {what} images are floats in [{lo:.3g}, {hi:.3g}]; float images must lie in [0, 1]: "
            "divide them by 255 or pass them as uint8."
        )
    raise DataError(
        f"The {what} images hold values in [{lo:.3g}, {hi:.3g}], which look normalised; pass the raw images "
        "(floats in [0, 1] or uint8) and put the normalisation in the model with "
        "unlearnbench.with_normalization(model, mean, std)."
    )


def _to_uint8(x: torch.Tensor, what: str, rounded: list[str] | None = None) -> torch.Tensor:
    """uint8 as is; floats in [0, 1] rounded to 8 bits (``what`` goes into ``rounded`` when that moved a value)."""
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point():
        _check_range(x, what)
        q = x.float().mul(255).round()
        if rounded is not None and what not in rounded and float((q.div(255) - x.float()).abs().max()) > 1e-5:
            rounded.append(what)
        return q.to(torch.uint8)
    raise DataError(f"The {what} images have dtype {x.dtype}; use uint8 (0..255) or floats in [0, 1].")


def _warn_rounded(rounded: list[str]) -> None:
    if rounded:
        warnings.warn(
            f"The {', '.join(rounded)} images are not multiples of 1/255; they are kept as 8-bit images like every "
            "dataset here (each value moves by at most 1/510). Pass uint8 images to keep them exact.",
            stacklevel=4,  # the user's call of UnlearnData.from_*
        )


def as_images(x: Any, what: str, rounded: list[str] | None = None) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 images from a tensor/array of uint8 or [0, 1] floats (CPU)."""
    t = _array(x, what)
    if t.dim() == 3:
        t = t.unsqueeze(1)  # (N, H, W) grey images
    if t.dim() != 4:
        raise DataError(f"The {what} images must be shaped (N, C, H, W) or (N, H, W), not {tuple(t.shape)}.")
    if t.shape[1] not in (1, 2, 3, 4) and t.shape[3] in (1, 3, 4):
        raise DataError(
            f"The {what} images are shaped {tuple(t.shape)}, which looks channels-last; "
            "pass x.permute(0, 3, 1, 2) (N, C, H, W)."
        )
    return _to_uint8(t, what, rounded).contiguous()


def as_labels(y: Any, n: int, what: str) -> torch.Tensor:
    if isinstance(y, (list, tuple)):
        y = np.asarray(y)
    t = _array(y, what + " label").flatten() if isinstance(y, (torch.Tensor, np.ndarray)) else None
    if t is None:
        raise DataError(f"The {what} labels must be a tensor, array or list of integers, not {type(y).__name__}.")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise DataError(f"The {what} labels have dtype {t.dtype}; class labels must be integers.")
    if len(t) != n:
        raise DataError(f"The {what} set has {n} images but {len(t)} labels.")
    if n and int(t.min()) < 0:
        raise DataError(f"The {what} labels include {int(t.min())}; class labels start at 0.")
    return t.to(torch.int64)


def _pair(value: Any, what: str) -> tuple[Any, Any]:
    if isinstance(value, TensorSet):
        return value.x.cpu(), value.y.cpu()
    if isinstance(value, torch.utils.data.Dataset):
        raise DataError(
            f"{what} is a Dataset; UnlearnData.from_tensors takes (images, labels) pairs: use "
            "UnlearnData.from_datasets for datasets."
        )
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise DataError(f"{what} must be an (images, labels) pair, not {type(value).__name__}.")
    return value[0], value[1]


def _set(x: torch.Tensor, y: torch.Tensor, name: str, offset: int = 0) -> TensorSet:
    return TensorSet(x, y, torch.arange(offset, offset + len(y)), None, name)


def _empty_like(ref: TensorSet, name: str) -> TensorSet:
    return TensorSet(ref.x[:0].clone(), ref.y[:0].clone(), ref.idx[:0].clone(), None, name)


def _info(
    sets: dict[str, TensorSet], num_classes: int | None, class_names: Sequence[str] | None, name: str,
) -> DatasetInfo:
    shapes = {k: tuple(s.x.shape[1:]) for k, s in sets.items() if s is not None}
    first, shape = next(iter(shapes.items()))
    for k, sh in shapes.items():
        if sh != shape:
            raise DataError(
                f"The {k} images are {'x'.join(map(str, sh))} but the {first} images are "
                f"{'x'.join(map(str, shape))}; every set needs one image shape (C, H, W)."
            )
    labelled = [s for s in sets.values() if s is not None and len(s)]
    top = max(int(s.y.max()) for s in labelled) if labelled else 0
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else top + 1
    if num_classes < 2:
        raise DataError(f"Unlearning needs at least 2 classes; the labels give {num_classes}.")
    if top >= num_classes:
        where = next(k for k, s in sets.items() if s is not None and len(s) and int(s.y.max()) == top)
        raise DataError(f"The {where} labels include {top}, but num_classes is {num_classes} (labels 0..{num_classes - 1}).")
    names = tuple(str(c) for c in class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
    if len(names) != num_classes:
        raise DataError(f"class_names lists {len(names)} names for {num_classes} classes.")
    train = torch.cat([s.x for k, s in sets.items() if k in ("forget", "retain", "train") and s is not None])
    mean, std = _channel_stats(train)
    # No augmentation for user data: whether crops or flips preserve its labels is unknown here.
    return DatasetInfo(name, num_classes, shape[0], shape[1], mean, std, class_names=names)


def _with_normalization(info: DatasetInfo, mean: Any, std: Any) -> DatasetInfo:
    """Attach the model's input normalisation (checked: per channel, std > 0, [0, 1] units)."""
    from dataclasses import replace

    if mean is None and std is None:
        return info
    if (mean is None) != (std is None):
        raise DataError("Give both mean and std for the normalisation, or neither.")
    c = info.in_channels
    stats = []
    for what, value in (("mean", mean), ("std", std)):
        vals = tuple(float(v) for v in (value.flatten().tolist() if isinstance(value, torch.Tensor) else
                                        (value,) if isinstance(value, (int, float)) else value))
        vals = vals * c if len(vals) == 1 else vals
        if len(vals) != c:
            raise DataError(f"The normalisation {what} has {len(vals)} values; the images have {c} channels.")
        stats.append(vals)
    m, s = stats
    if any(v <= 0 for v in s):
        raise DataError(f"The normalisation std must be positive; got {s}.")
    if any(abs(v) > 1.5 for v in m) or any(v > 1.5 for v in s):
        raise DataError(
            f"The normalisation mean {m} / std {s} is in 0-255 units, but the images are in [0, 1]: "
            f"divide both by 255 (mean {tuple(round(v / 255, 4) for v in m)}, std {tuple(round(v / 255, 4) for v in s)})."
        )
    return replace(info, normalization=(m, s))


def _ood_set(ood: Any) -> TensorSet | None:
    """OOD images for SCAR: images alone, an (images, labels) pair or a dataset; labels are unused."""
    if ood is None:
        return None
    if isinstance(ood, torch.utils.data.Dataset):
        x, _, _ = materialise(ood, "ood")
    elif isinstance(ood, (tuple, list)):
        x = as_images(_pair(ood, "ood")[0], "ood")
    else:
        x = as_images(ood, "ood")
    return _set(x, torch.zeros(len(x), dtype=torch.int64), "ood")


def _finish(
    forget: TensorSet, retain: TensorSet, val: TensorSet | None, test: TensorSet, info: DatasetInfo,
    ood: TensorSet | None, spec: ForgetSpec | None = None, split_seed: int = 0,
) -> UnlearnData:
    if len(forget) == 0:
        raise DataError("The forget set is empty; give at least one image to forget.")
    if len(retain) == 0:
        raise DataError("The retain set is empty; unlearning needs the data the model keeps.")
    if len(test) == 0:
        raise DataError("The test set is empty; evaluation needs held-out images.")
    if ood is not None and tuple(ood.x.shape[1:]) != tuple(forget.x.shape[1:]):
        raise DataError(f"The ood images are {'x'.join(map(str, ood.x.shape[1:]))}, not {'x'.join(map(str, forget.x.shape[1:]))} like the others.")
    val = val if val is not None else _empty_like(retain, "val")
    classes = sorted(set(forget.y.tolist()))
    kept = set(retain.y.tolist())
    test_retained = test_forgotten = None
    forget_classes: tuple[int, ...] = ()
    if spec is None:
        # A forget set whose classes the retain set lacks entirely removes those classes: report
        # the test set with and without them, as for class:C.
        if not kept & set(classes):
            spec = ForgetSpec("class", "class:" + ",".join(map(str, classes)), classes=tuple(map(str, classes)))
        else:
            spec = ForgetSpec("indices", f"given:{len(forget)}")
    if spec.kind == "class":
        forget_classes = tuple(classes)
        gone = torch.isin(test.y, torch.tensor(classes))
        test_retained, test_forgotten = test.select(~gone, "test_retained"), test.select(gone, "test_forgotten")
    return UnlearnData(
        forget=forget, retain=retain, val=val, test=test, num_classes=info.num_classes, info=info, spec=spec,
        split_seed=split_seed, forget_classes=forget_classes, test_retained=test_retained,
        test_forgotten=test_forgotten, extras={OOD_KEY: ood} if ood is not None else {},
    )


# ----------------------------------------------------------------------------- constructors


def from_tensors(
    forget: Any,
    retain: Any,
    test: Any,
    val: Any = None,
    ood: Any = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "user",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> UnlearnData:
    """``UnlearnData`` from ``(images, labels)`` pairs (tensors or numpy arrays).

    ``forget`` and ``retain`` are the training data to delete and to keep, ``test`` held-out
    data; ``val`` optional held-out data some methods read; ``ood`` optional out-of-distribution
    images for SCAR (images alone or a pair). ``num_classes`` defaults to the largest label + 1.
    A forget set whose classes are absent from the retain set is class-wise forgetting: the
    report then also covers the test set without and with only those classes.
    """
    raw = {}
    rounded: list[str] = []
    for what, value in (("forget", forget), ("retain", retain), ("test", test), ("val", val)):
        if value is None:
            raw[what] = None
            continue
        x, y = _pair(value, what)
        xi = as_images(x, what, rounded)
        raw[what] = (xi, as_labels(y, len(xi), what))
    sets = {
        "forget": _set(*raw["forget"], "forget"),
        "retain": _set(*raw["retain"], "retain", offset=len(raw["forget"][1])),
        "test": _set(*raw["test"], "test"),
        "val": _set(*raw["val"], "val") if raw["val"] is not None else None,
    }
    ood_set = _ood_set(ood)
    info = _with_normalization(_info(sets, num_classes, class_names, name), mean, std)
    _warn_rounded(rounded)
    return _finish(sets["forget"], sets["retain"], sets["val"], sets["test"], info, ood_set)


def _item_image(img: Any, what: str) -> torch.Tensor:
    """One dataset image as (C, H, W): a PIL image / numpy array (H, W[, C]) or a tensor (C, H, W)."""
    if isinstance(img, torch.Tensor):
        t = img.detach().cpu()
        if t.dim() == 2:
            t = t.unsqueeze(0)
    else:
        if hasattr(img, "getbands"):  # a PIL image, without importing PIL
            if img.mode not in ("L", "RGB", "RGBA", "LA", "P", "1"):
                raise DataError(f"{what} is a {img.mode!r} PIL image; convert it to 'L' or 'RGB' (8-bit).")
            if img.mode in ("P", "1"):
                img = img.convert("RGB" if img.mode == "P" else "L")
            img = np.asarray(img)
        if not isinstance(img, np.ndarray):
            raise DataError(f"{what} is a {type(img).__name__}; a dataset must yield PIL images, tensors or arrays.")
        t = torch.from_numpy(np.array(img, copy=True))
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1) if t.dim() == 3 else t
    if t.dim() != 3:
        raise DataError(f"{what} is shaped {tuple(t.shape)}; an image must be (C, H, W) or (H, W).")
    return t


def _label(label: Any, what: str) -> int:
    if isinstance(label, torch.Tensor) and label.numel() == 1 and not label.is_floating_point():
        return int(label.item())
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label)
    raise DataError(f"{what} has label {label!r}; a dataset must yield (image, integer class) pairs.")


def materialise(
    dataset: Any, what: str, rounded: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...] | None]:
    """All of a dataset's ``(image, label)`` items as uint8 images and int64 labels (one array each)."""
    if not isinstance(dataset, torch.utils.data.Dataset) and not hasattr(dataset, "__getitem__"):
        raise DataError(f"The {what} data is a {type(dataset).__name__}, not a Dataset yielding (image, label).")
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"The {what} dataset has no length; give a map-style Dataset (with __len__).") from None
    if n == 0:
        raise DataError(f"The {what} dataset is empty.")
    x: torch.Tensor | None = None
    y = torch.empty(n, dtype=torch.int64)
    for i in range(n):
        item = dataset[i]
        where = f"Item {i} of the {what} dataset"
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"{where} is a {type(item).__name__}; a dataset must yield (image, label) pairs.")
        img = _item_image(item[0], where)
        if x is None:  # one preallocated array, not a list of n images
            x = torch.empty((n, *img.shape), dtype=torch.uint8)
        elif tuple(img.shape) != tuple(x.shape[1:]):
            raise DataError(
                f"{where} is {'x'.join(map(str, img.shape))} but item 0 is {'x'.join(map(str, x.shape[1:]))}; "
                "give every image one size (e.g. transforms.Resize)."
            )
        if img.dtype != torch.uint8:
            if not img.is_floating_point():
                raise DataError(f"The {what} images have dtype {img.dtype}; use uint8 (0..255) or floats in [0, 1].")
            img = _to_uint8(img, what, rounded)
        x[i] = img
        y[i] = _label(item[1], where)
    names = getattr(dataset, "classes", None) or getattr(getattr(dataset, "dataset", None), "classes", None)
    return x, y, tuple(map(str, names)) if names else None


def from_datasets(
    forget: Any,
    retain: Any,
    test: Any,
    val: Any = None,
    ood: Any = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "user",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> UnlearnData:
    """``UnlearnData`` from datasets yielding ``(image, label)`` (torchvision ``ImageFolder``,
    ``CIFAR10``, a ``Subset``, a ``TensorDataset``...): PIL images or tensors of one size.

    Class names default to the datasets' ``classes`` attribute when they have one.
    """
    sets: dict[str, TensorSet | None] = {}
    offset = 0
    found_names = None
    rounded: list[str] = []
    for what, ds in (("forget", forget), ("retain", retain), ("test", test), ("val", val)):
        if ds is None:
            sets[what] = None
            continue
        x, y, names = materialise(ds, what, rounded)
        found_names = found_names or names
        sets[what] = _set(x, y, what, offset if what in ("forget", "retain") else 0)
        if what in ("forget", "retain"):
            offset += len(y)
    info = _with_normalization(_info(sets, num_classes, class_names if class_names is not None else found_names, name),
                               mean, std)
    _warn_rounded(rounded)
    return _finish(sets["forget"], sets["retain"], sets["val"], sets["test"], info, _ood_set(ood))


def from_dataset(
    train: Any,
    test: Any,
    forget: str | Sequence[int] | np.ndarray | torch.Tensor,
    *,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    ood: Any = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "user",
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> UnlearnData:
    """``UnlearnData`` from the training set, the test set and what to delete.

    ``forget`` is a forget spec (``"class:3"``, ``"random:0.1"``, ``"indices:FILE"``) or the
    positions in ``train`` to delete (a deletion request). ``val_fraction`` holds out that
    fraction of each class (chosen by ``split_seed``) as validation data; it defaults to 0
    because a model trained on all of ``train`` has no held-out part of it. ``train``/``test``
    may be datasets or ``(images, labels)`` pairs.
    """
    sets = {}
    found = None
    rounded: list[str] = []
    for what, value in (("train", train), ("test", test)):
        if isinstance(value, (tuple, list)):
            xp, yp = _pair(value, what)
            x = as_images(xp, what, rounded)
            y, names = as_labels(yp, len(x), what), None
        else:
            x, y, names = materialise(value, what, rounded)
        found = found or names
        sets[what] = _set(x, y, what)
    info = _with_normalization(_info(sets, num_classes, class_names if class_names is not None else found, name),
                               mean, std)
    _warn_rounded(rounded)
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    splits = split_train_val(RawDataset(sets["train"], sets["test"], info), split_seed, val_fraction)
    ood_set = _ood_set(ood)
    if isinstance(forget, str):
        data = make_unlearn_data(splits, parse_forget_spec(forget))
        return dataclasses.replace(data, extras={OOD_KEY: ood_set} if ood_set is not None else {})
    mask = _deletion_mask(splits, forget)
    spec = ForgetSpec("indices", f"indices:{int(mask.sum())} given")
    train_set = splits.train
    return _finish(train_set.select(mask, "forget"), train_set.select(~mask, "retain"),
                   splits.val if len(splits.val) else None, splits.test, info, ood_set, spec, split_seed)


def _deletion_mask(splits: Splits, forget: Any) -> np.ndarray:
    idx = forget.detach().cpu().numpy() if isinstance(forget, torch.Tensor) else np.asarray(forget)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise DataError("forget must be a forget spec such as 'class:3' or a non-empty list of integer positions in train.")
    n_total = len(splits.train) + len(splits.val)
    if int(idx.min()) < 0 or int(idx.max()) >= n_total:
        bad = int(idx.min()) if int(idx.min()) < 0 else int(idx.max())
        raise DataError(f"Index {bad} in forget is out of range: the training set has positions 0..{n_total - 1}.")
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"Index {int(uniq[counts > 1][0])} appears more than once in forget.")
    in_val = np.isin(idx, splits.val.idx.numpy())
    if in_val.any():
        raise DataError(
            f"Index {int(idx[in_val][0])} in forget is in the validation split (val_fraction > 0); "
            "use val_fraction=0 or another split_seed."
        )
    mask = np.isin(splits.train.idx.numpy(), idx)
    if mask.all():
        raise DataError("forget lists every training image; keep at least one to retain.")
    return mask


def check_unlearn_data(data: Any, where: str) -> UnlearnData:
    """``data`` if it is an ``UnlearnData``, else one sentence saying how to make one."""
    if isinstance(data, UnlearnData):
        return data
    raise DataError(
        f"{where} takes an UnlearnData, not a {type(data).__name__}; build one with "
        "UnlearnData.from_tensors(forget=(x, y), retain=(x, y), test=(x, y)) or UnlearnData.from_datasets(...)."
    )


def as_tensor_set(data: Any, where: str, split: str = "test") -> TensorSet:
    """The images to evaluate or attack: a ``TensorSet``, a split of an ``UnlearnData``, an
    ``(images, labels)`` pair or a dataset yielding ``(image, label)``; anything else is one sentence."""
    if isinstance(data, TensorSet):
        return data
    if isinstance(data, UnlearnData):
        sets = {"forget": data.forget, "retain": data.retain, "val": data.val, "test": data.test,
                "test_retained": data.test_retained, "test_forgotten": data.test_forgotten}
        if split not in sets:
            raise DataError(f"Unknown split {split!r}; choose one of {', '.join(sets)}.")
        if sets[split] is None or len(sets[split]) == 0:
            raise DataError(f"The {split} split of this data is empty; choose another split.")
        return sets[split]
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (int, float)):
        x = as_images(data[0], "given")
        return _set(x, as_labels(data[1], len(x), "given"), "data")
    if isinstance(data, torch.utils.data.Dataset):
        x, y, _ = materialise(data, "given")
        return _set(x, y, "data")
    raise DataError(
        f"{where} takes an UnlearnData (with split=...), an (images, labels) pair or a Dataset yielding "
        f"(image, label), not a {type(data).__name__}."
    )


# ``UnlearnData.from_tensors(...)`` etc. are the documented way in. The type lives below this module
# (splits.py), so the constructors are attached to it from here rather than imported upwards by it;
# ``core.data`` imports this module, so they are there whenever ``UnlearnData`` is.
UnlearnData.from_tensors = staticmethod(from_tensors)
UnlearnData.from_datasets = staticmethod(from_datasets)
UnlearnData.from_dataset = staticmethod(from_dataset)
