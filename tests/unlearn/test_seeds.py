"""A method's config seed reaches every random draw of that method, and nothing else does
(issue #19, item 3: metamorphic tests of seeds).

Each test runs the same thing three times: seed s under two different global torch RNG states
(must be bit-identical: no draw reads the global generator) and seed s' (must differ: the seed
is not ignored somewhere). ``test_contract`` already checks "same seed, same weights" through
``unlearn.run``, which re-seeds the global RNG itself and so would hide a draw from the global
generator; here the registered function is called directly with a built config.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from unlearn_helpers import FAST

from unlearnbench.unlearn import METHODS, build_config, loops
from unlearnbench.unlearn.base import methods_for
from unlearnbench.unlearn.loops import draw_random_labels
from unlearnbench.unlearn.ood import ood_set, synthetic_images

# Methods with no random draw at all, each with the reason (checked: seed 0 and 1 give the same weights).
DETERMINISTIC = {
    "influence": "WoodFisher over the first hessian_samples retain points in order; one full-batch step",
}
# Two methods with different kinds of draws run in CI (labels + shuffling; OOD batches + shuffling,
# ~1 s each); every other method under `make test-deep` (~10 s in all).
FAST_CHECK = ("random_label", "scar")


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _small(data, ood):
    """Class 3 forgotten, with a 256-point retain set (the seed question does not need more)."""
    return dataclasses.replace(data, retain=data.retain.select(torch.arange(256)), extras={"ood": ood})


def _three_runs(name, model, data):
    fn = METHODS.get(name)
    outs = []
    for seed, global_state in ((0, 11), (0, 12), (1, 11)):
        cfg = build_config(name, FAST[name], seed)
        torch.manual_seed(global_state)  # the caller's RNG state must not matter
        outs.append(fn(copy.deepcopy(model), data, cfg))
    return outs


def _check_method(name, model, data):
    same_seed, same_seed_other_global, other_seed = _three_runs(name, model, data)
    assert _same(same_seed, same_seed_other_global), f"{name} reads the global RNG"
    if name in DETERMINISTIC:
        assert _same(same_seed, other_seed), f"{name} is listed as deterministic but depends on its seed"
    else:
        assert not _same(same_seed, other_seed), f"{name} ignores its config seed"


@pytest.mark.parametrize("name", FAST_CHECK)
def test_config_seed_drives_the_method(name, digits_cnn, digits_class3, small_ood):
    _check_method(name, digits_cnn, _small(digits_class3, small_ood))


@pytest.mark.deep
@pytest.mark.parametrize("name", [n for n in methods_for("classification") if n not in FAST_CHECK])
def test_config_seed_drives_every_other_method(name, digits_cnn, digits_class3, small_ood):
    _check_method(name, digits_cnn, _small(digits_class3, small_ood))


@pytest.mark.parametrize(("labels", "mixed"), [("uniform", False), ("wrong", True)])
def test_random_labels_follow_the_config_seed(labels, mixed, digits_cnn, digits_class3, small_ood, monkeypatch):
    """The labels random labelling trains on are a function of the config seed alone."""
    drawn: list[torch.Tensor] = []
    real = loops.draw_random_labels

    def spy(y, num_classes, generator, exclude_true=False):
        out = real(y, num_classes, generator, exclude_true)
        drawn.append(out.clone())
        return out

    monkeypatch.setattr(loops, "draw_random_labels", spy)
    monkeypatch.setattr("unlearnbench.unlearn.random_label.draw_random_labels", spy)
    data = _small(digits_class3, small_ood)
    runs = []
    for seed, global_state in ((0, 1), (0, 2), (5, 1)):
        drawn.clear()
        cfg = build_config("random_label", {"epochs": 2, "labels": labels, "mixed": mixed}, seed)
        torch.manual_seed(global_state)
        METHODS.get("random_label")(copy.deepcopy(digits_cnn), data, cfg)
        runs.append(torch.cat(drawn))
    assert len(runs[0]) == 2 * len(data.forget)  # every forget row relabelled once per epoch
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])
    if labels == "wrong":
        # not this test's subject, but cheap: "wrong" labels are never the true label
        assert all(int(r.max()) < data.num_classes for r in runs)


@given(seed=st.integers(0, 2**31 - 1), other=st.integers(0, 2**31 - 1), c=st.integers(2, 12),
       exclude=st.booleans())
def test_draw_random_labels_depend_on_the_generator_only(seed, other, c, exclude):
    y = torch.arange(200) % c
    torch.manual_seed(other)
    a = draw_random_labels(y, c, torch.Generator().manual_seed(seed), exclude)
    torch.manual_seed(other + 1)
    b = draw_random_labels(y, c, torch.Generator().manual_seed(seed), exclude)
    d = draw_random_labels(y, c, torch.Generator().manual_seed(seed + 1), exclude)
    assert torch.equal(a, b)
    if c > 2 or not exclude:  # two classes, never the true one: no choice left, nothing random
        assert not torch.equal(a, d)  # 200 labels with >= 2 choices each: equal with probability <= 2^-200
    assert int(a.min()) >= 0 and int(a.max()) < c
    if exclude:
        assert not bool((a == y).any())


def test_ood_batches_follow_the_seed(digits_class3):
    info = digits_class3.info
    torch.manual_seed(1)
    a = ood_set("synthetic", info, 128, seed=3)
    torch.manual_seed(2)
    b = ood_set("synthetic", info, 128, seed=3)
    c = ood_set("synthetic", info, 128, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    # and nothing but the seed and the size: the first images do not depend on how many follow
    assert torch.equal(synthetic_images(128, info.in_channels, info.image_size, seed=3).x, a.x)
