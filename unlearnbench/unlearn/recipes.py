"""Defaults that fit the data: a method's starting config is chosen by the data's regime.

The methods' dataclass defaults were tuned on the embedded 8×8 ``digits`` data (a small CNN, a
few epochs, lr 0.05). On CIFAR-shaped data the same values wreck the model (issue 21: SalUn with
them took a ResNet-18 from 91 % to 35 % test accuracy), while the papers' values live in presets.
So ``unlearn`` starts from a recipe picked by the data's shape:

- ``small``: images of at most 16 px (digits-like): the method's own defaults;
- ``natural-32``: RGB images of 24–64 px (CIFAR-like): the method's preset defined on such a
  dataset, preferring the same kind of forget spec (class vs random) and the nearest class count;
- anything else: the defaults, and the run says so.

A preset or explicit config keys always win over the recipe. Which recipe each regime gives is
shown by ``unlearnbench ls methods NAME``. The recipes *are* the presets' contents (h-paper keeps
those true to the papers); this module only chooses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

REGIMES = {
    "small": "images of at most 16 px (digits-like)",
    "natural-32": "RGB images of 24-64 px (CIFAR-like)",
    "other": "any other shape",
}


@dataclass(frozen=True)
class MethodRecipe:
    method: str
    regime: str
    name: str  # "defaults" or the preset's name
    config: dict[str, Any] = field(default_factory=dict)
    fits: bool = True  # False: no recipe was made for this regime; the defaults are a guess

    def describe(self) -> str:
        src = "the method's defaults (tuned on digits)" if self.name == "defaults" else f"preset {self.name}"
        return f"{self.regime} ({REGIMES[self.regime]}): {src}" + ("" if self.fits else ", not tuned for it")


def regime_of(channels: int, image_size: int) -> str:
    if image_size <= 16:
        return "small"
    if channels == 3 and 24 <= image_size <= 64:
        return "natural-32"
    return "other"


def _preset_regime(preset: Any) -> tuple[str, int] | None:
    from unlearnbench.core.data import DATASETS

    if preset.dataset not in DATASETS:
        return None
    shape = DATASETS.info(preset.dataset).get("shape")
    if shape is None:
        return None
    classes, channels, size = shape
    return regime_of(channels, size), classes


def _release_day(release: str) -> int:
    """YYYYMMDD of a preset's ``release`` ("owner/repo@commit (YYYY-MM-DD)"); 0 when it names none."""
    return int(release.rsplit("(", 1)[-1].rstrip(")").replace("-", "")) if "(" in release else 0


def recipe_for(method: str, channels: int, image_size: int, num_classes: int,
               classwise: bool | None = None) -> MethodRecipe:
    """The recipe ``method`` starts from on data of this shape (and forget kind, when known)."""
    from unlearnbench.unlearn.presets import PRESETS

    regime = regime_of(channels, image_size)
    if regime == "small":
        return MethodRecipe(method, regime, "defaults")
    candidates = []
    for name in PRESETS.names():
        p = PRESETS.get(name)
        where = _preset_regime(p)
        if p.method != method or where is None or where[0] != regime:
            continue
        p_classwise = p.forget.startswith(("class:", "subclass:"))
        kind_miss = classwise is not None and p_classwise != classwise
        # Several releases of one protocol (e.g. SalUn's 2023 code behind the tables and today's):
        # the newest release is the default; the others stay available by name.
        candidates.append(((kind_miss, abs(where[1] - num_classes), -_release_day(p.release), name), p))
    if not candidates:
        return MethodRecipe(method, regime, "defaults", fits=False)
    _, best = min(candidates, key=lambda c: c[0])
    return MethodRecipe(method, regime, best.name, dict(best.config))


def recipes_by_regime(method: str) -> list[str]:
    """One line per regime for ``ls methods NAME`` (class-wise and random forgetting where they differ)."""
    out = []
    for c, size in ((1, 8), (3, 32)):  # small, natural-32
        rand, cls = recipe_for(method, c, size, 10, False), recipe_for(method, c, size, 10, True)
        if rand.name == cls.name:
            out.append(rand.describe())
        else:
            out.append(f"{rand.describe()} for random forgetting; {cls.describe().split(': ', 1)[1]} for class-wise")
    out.append(f"other ({REGIMES['other']}): the method's defaults, not tuned for it")
    return out


DROP_POINTS = 10.0  # a utility drop larger than this (accuracy points) is reported
_LABELS = {"retain_acc": "retain accuracy", "test_acc": "test accuracy"}


def utility_drop(method: str, before: dict[str, float], after: dict[str, float], recipe: str = "",
                 fits: bool = True) -> str | None:
    """One line when retain or test accuracy fell more than ``DROP_POINTS`` below the original's:
    what fell, the likely cause and what to try. None otherwise."""
    from unlearnbench.unlearn.presets import PRESETS

    drops = {k: before[k] - after[k] for k in _LABELS if k in before and k in after}
    if not drops or max(drops.values()) <= DROP_POINTS:
        return None
    key = max(drops, key=lambda k: drops[k])
    if recipe in ("", "defaults") and not fits:
        cause = f"{method}'s defaults were tuned on 8x8 digits, not on data of this shape"
    elif recipe in ("", "defaults", "given"):
        cause = "the learning rate or number of epochs is too aggressive for this model"
    else:
        cause = f"the recipe {recipe} was made for another model or dataset than this one"
    presets = [n for n in PRESETS.names() if PRESETS.get(n).method == method and n != recipe]
    tries = f"a preset ({', '.join(presets)}; `ls presets`) or " if presets else ""
    return (f"{method} cut {_LABELS[key]} from {before[key]:.1f}% to {after[key]:.1f}% "
            f"({drops[key]:.1f} points): likely {cause}; try {tries}a lower lr (--set lr=...).")
