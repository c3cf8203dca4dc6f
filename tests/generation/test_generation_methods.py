"""Contract and mechanism tests of the generation methods (ddpm_tiny on digits, forget class 3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from unlearnbench.core.errors import ModelError
from unlearnbench.unlearn import METHODS, run
from unlearnbench.unlearn.base import declared_reads, methods_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unlearn"))
from unlearn_helpers import recording  # noqa: E402

FAST_GEN: dict[str, dict] = {
    "ddpm_finetune": {"steps": 2, "batch_size": 16},
    "ddpm_grad_ascent": {"steps": 2, "batch_size": 16},
    "ddpm_random_label": {"steps": 2, "batch_size": 16},
    "ddpm_salun": {"steps": 2, "batch_size": 16, "mask_batch_size": 64},
    "ddpm_esd": {"steps": 2, "batch_size": 16},
    "ddpm_retrain": {"steps": 2, "batch_size": 16, "warmup": 0},
    "ddpm_selective_amnesia": {"steps": 2, "batch_size": 16, "replay_per_class": 1, "replay_steps": 2,
                               "fisher_timesteps": 2},
}


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_fast_configs_cover_every_generation_method():
    assert set(FAST_GEN) == set(methods_for("generation"))
    assert all(METHODS.info(n)["task"] == "generation" for n in FAST_GEN)
    assert "salun" in methods_for("classification") and "salun" not in methods_for("generation")


@pytest.mark.parametrize("method", sorted(FAST_GEN))
def test_generation_contract(method, tiny_ddpm, digits_class3):
    before = _state(tiny_ddpm)
    log: set[str] = set()
    first = run(method, tiny_ddpm, recording(digits_class3, digits_class3.val, log), FAST_GEN[method], seed=0, device="cpu")
    assert log == set(declared_reads(method, first.config)), f"{method} read {sorted(log)}"
    after = _state(tiny_ddpm)
    assert all(torch.equal(before[k], after[k]) for k in before) and not tiny_ddpm.training
    assert first.model is not tiny_ddpm and not first.model.training and first.seconds > 0
    second = run(method, tiny_ddpm, digits_class3, FAST_GEN[method], seed=0, device="cpu")
    a, b = _state(first.model), _state(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a), f"{method} is not deterministic under a seed"


def test_methods_refuse_a_model_of_the_other_task(tiny_ddpm, digits_cnn, digits_class3):
    with pytest.raises(ModelError, match="not a generation model"):
        run("ddpm_salun", digits_cnn, digits_class3, FAST_GEN["ddpm_salun"], device="cpu")
    with pytest.raises(ModelError, match="is a generation model"):
        run("salun", tiny_ddpm, digits_class3, {"epochs": 1}, device="cpu")
    from unlearnbench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="applies to classifiers"):
        run("ddpm_finetune", tiny_ddpm, digits_class3, FAST_GEN["ddpm_finetune"], prune=0.5, device="cpu")
    with pytest.raises(ConfigError, match="does not train on the retain set|adv"):
        run("ddpm_salun", tiny_ddpm, digits_class3, FAST_GEN["ddpm_salun"], adv_retain="pgd", device="cpu")


def test_salun_leaves_non_salient_weights_untouched(tiny_ddpm, digits_class3):
    from unlearnbench.unlearn import build_config
    from unlearnbench.unlearn.diffusion.salun import diffusion_saliency_mask

    cfg = {"steps": 5, "batch_size": 32, "lr": 1e-3, "mask_batch_size": 64}
    out = run("ddpm_salun", tiny_ddpm, digits_class3, cfg, seed=0, device="cpu").model
    mask = diffusion_saliency_mask(tiny_ddpm, digits_class3.forget, build_config("ddpm_salun", cfg, seed=0))
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == int(total * 0.5)
    moved = frozen_moved = 0
    new = dict(out.named_parameters())
    for name, p in tiny_ddpm.named_parameters():
        diff = new[name].detach() != p.detach()
        frozen_moved += int((diff & ~mask[name]).sum())
        moved += int((diff & mask[name]).sum())
    assert frozen_moved == 0  # bit-identical outside the mask
    assert moved > 0.5 * int(total * 0.5)  # and the salient weights did train


def _eps(model, xt, t, c):
    with torch.no_grad():
        return model(xt, t, c)


def test_random_labels_move_the_forgotten_condition_and_keep_the_others_apart(tiny_ddpm, digits_class3):
    cfg = {"steps": 15, "batch_size": 64, "lr": 1e-3, "alpha": 0.05}
    out = run("ddpm_random_label", tiny_ddpm, digits_class3, cfg, seed=0, device="cpu").model
    g = torch.Generator().manual_seed(0)
    xt, t = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 1000, (64,), generator=g)

    def dist(model, a, b):  # how differently the model denoises under conditions a and b
        return float((_eps(model, xt, t, torch.full((64,), a)) - _eps(model, xt, t, torch.full((64,), b))).norm())

    # the loss pulls eps(x, 3) onto eps(x, 4): the forgotten condition collapses onto its target ...
    forgotten = dist(out, 3, 4) / dist(tiny_ddpm, 3, 4)
    # ... while the other conditions stay distinct (shared weights move them, within a bound)
    pairs = [(c, c + 1) for c in range(9) if 3 not in (c, c + 1)]
    kept = [dist(out, a, b) / dist(tiny_ddpm, a, b) for a, b in pairs]
    assert forgotten < 0.4 and min(kept) > 0.35, (forgotten, kept)
    assert forgotten < 0.6 * sum(kept) / len(kept)


def test_retrain_never_sees_the_forgotten_class(tiny_ddpm, digits_class3):
    from unlearnbench.core.diffusion import ConditionalDDPM

    log: set[str] = set()
    out = run("ddpm_retrain", tiny_ddpm, recording(digits_class3, digits_class3.val, log), FAST_GEN["ddpm_retrain"], device="cpu")
    assert log == {"retain"} and not (digits_class3.retain.y == 3).any()
    # it starts from fresh weights: the original's weights do not matter
    other = ConditionalDDPM(tiny_ddpm.arch, 10, 1, 8).fresh(123)
    again = run("ddpm_retrain", other, digits_class3, FAST_GEN["ddpm_retrain"], device="cpu")
    a, b = _state(out.model), _state(again.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
