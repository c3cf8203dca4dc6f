"""The conditional DDPM: registry entry, guidance, DDIM sampling against the reference's update
rule written out independently, seed determinism, EMA, checkpoints."""

from __future__ import annotations

import pytest
import torch

from unlearnbench.core.checkpoint import load_checkpoint, save_checkpoint
from unlearnbench.core.diffusion import EMA, ConditionalDDPM, SampleConfig, sample
from unlearnbench.core.errors import ConfigError, ModelError
from unlearnbench.core.models import MODELS, create_model, model_task


def test_registry_declares_the_generation_task():
    gen = [n for n in MODELS.names() if MODELS.info(n)["task"] == "generation"]
    assert set(gen) == {"ddpm_tiny", "ddpm_cifar10"}
    assert model_task("cnn") == "classification" and model_task("ddpm_tiny") == "generation"
    m = create_model("ddpm_tiny", 10, 1, 8)
    assert isinstance(m, ConditionalDDPM) and m.null_class == 10
    assert m.unet.class_embedding.num_embeddings == 11  # the classes + the null class of guidance
    fashion = create_model("ddpm_tiny", 10, 1, 28)  # Fashion-MNIST's 28x28 fits the 2-level UNet
    with torch.no_grad():
        assert fashion(torch.randn(2, 1, 28, 28), torch.tensor([1, 2]), torch.tensor([0, 10])).shape == (2, 1, 28, 28)
    with pytest.raises(ModelError, match="divisible"):
        create_model("ddpm_cifar10", 10, 3, 28)


def test_cifar10_config_matches_the_reference_network():
    m = create_model("ddpm_cifar10", 10, 3, 32)
    n = sum(p.numel() for p in m.parameters())
    # ch 128, mult (1, 2, 2, 2), 2 res blocks, attention at 16x16: the DDIM/SA CIFAR-10 net has ~35.7M
    assert 34e6 < n < 38e6
    assert [type(b).__name__ for b in m.unet.down_blocks] == ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]


def test_guidance_is_the_reference_formula(tiny_ddpm):
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.tensor([3, 100, 500, 999])
    c = torch.tensor([0, 3, 5, 9])
    with torch.no_grad():
        cond, uncond = tiny_ddpm(x, t, c), tiny_ddpm(x, t, torch.full_like(c, 10))
        assert torch.allclose(tiny_ddpm.guided(x, t, c, 2.0), 3 * cond - 2 * uncond, atol=1e-5)
        assert torch.equal(tiny_ddpm.guided(x, t, c, 0.0), cond)


def _reference_ddim(model, x, c, steps, w):
    """Unlearn-Saliency DDPM/functions/denoising.py generalized_steps_conditional with eta = 0, skip
    type uniform: seq = range(0, T, T // steps); alphas from cumprod(1 - [0, betas])."""
    T = model.timesteps
    betas = torch.linspace(model.beta_start, model.beta_end, T, dtype=torch.float32)
    seq = list(range(0, T, T // steps))
    seq_next = [-1] + seq[:-1]
    abar = torch.cat([torch.ones(1), (1 - betas).cumprod(0)])  # compute_alpha(b, t) = abar[t + 1]
    for i, j in zip(reversed(seq), reversed(seq_next), strict=True):
        at, an = abar[i + 1], abar[j + 1]
        et = model.guided(x, torch.full((x.shape[0],), i), c, w)
        x0 = (x - et * (1 - at).sqrt()) / at.sqrt()
        x = an.sqrt() * x0 + (1 - an).sqrt() * et
    return x


def test_ddim_sampling_matches_the_reference_update(tiny_ddpm):
    labels = torch.tensor([0, 3, 7])
    ours = sample(tiny_ddpm, labels, SampleConfig(steps=10, eta=0.0, guidance=2.0, seed=5))
    noise = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = _reference_ddim(tiny_ddpm, noise, labels, 10, 2.0)
    assert torch.allclose(ours, ((ref.clamp(-1, 1) + 1) / 2), atol=1e-4)


def test_sampling_is_deterministic_under_a_seed(tiny_ddpm):
    labels = torch.tensor([1, 2, 3, 4, 5])
    cfg = SampleConfig(steps=4, eta=1.0, seed=11)  # eta 1: fresh noise every step, from the seeded generator
    tiny_ddpm.train()
    try:
        a = sample(tiny_ddpm, labels, cfg)
        assert tiny_ddpm.training  # the mode is restored
    finally:
        tiny_ddpm.eval()
    b = sample(tiny_ddpm, labels, cfg)
    c = sample(tiny_ddpm, labels, SampleConfig(steps=4, eta=1.0, seed=12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (5, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    # the initial noise is drawn before batching; with eta 0 the batch size cannot change a sample
    d0 = sample(tiny_ddpm, labels, SampleConfig(steps=4, eta=0.0, seed=3, batch_size=5))
    d1 = sample(tiny_ddpm, labels, SampleConfig(steps=4, eta=0.0, seed=3, batch_size=2))
    assert torch.allclose(d0, d1, atol=1e-5)


def test_sample_refuses_bad_inputs(tiny_ddpm, digits_cnn):
    with pytest.raises(ConfigError, match="0..9"):
        sample(tiny_ddpm, [10])
    with pytest.raises(ModelError, match="conditional DDPM"):
        sample(digits_cnn, [1])
    with pytest.raises(ConfigError, match="eta"):
        SampleConfig(eta=2.0)


def test_ema_is_the_reference_moving_average():
    m = torch.nn.Linear(2, 1)
    ema = EMA(m, 0.9)
    before = [p.detach().clone() for p in ema.shadow.parameters()]
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    ema.update(m)
    for s, b, p in zip(ema.shadow.parameters(), before, m.parameters(), strict=True):
        assert torch.allclose(s, 0.9 * b + 0.1 * p)


def test_training_checkpoint_roundtrip(tmp_path):
    from unlearnbench.core.diffusion import DiffusionTrainConfig
    from unlearnbench.core.jobs import train_generator

    cfg = DiffusionTrainConfig(steps=3, batch_size=32, warmup=0, device="cpu")
    out = train_generator("digits", "ddpm_tiny", cfg, exclude="class:3")
    assert not (out.data.retain.y == 3).any()
    meta = out.meta
    assert meta["task"] == "generation" and meta["kind"] == "retrain" and meta["exclude"] == "class:3"
    assert {"data_fingerprint", "provenance", "forget_set", "train_config"} <= set(meta)
    path = save_checkpoint(tmp_path / "g.pt", out.model, meta)
    ck = load_checkpoint(path)
    assert ck.task == "generation"
    rebuilt = ck.build("cpu")
    x, t, c = torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(rebuilt(x, t, c), out.model(x, t, c))
    # the same training seed gives the same weights
    again = train_generator("digits", "ddpm_tiny", cfg, exclude="class:3")
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), out.model.state_dict().values(),
                                                   strict=True))


@pytest.mark.parametrize("threads", [1, 2])
def test_generation_runs_on_the_callers_threads(digits_splits, digits_class3, threads):
    """Training, sampling and unlearning a DDPM use the intra-op thread count the caller set (the
    CLI's --threads, a study job's pinned count), as classifiers do, and leave it as it was."""
    from unlearnbench.core.diffusion import DiffusionTrainConfig, fit_diffusion
    from unlearnbench.unlearn import run as run_method

    seen: list[int] = []
    info = digits_splits.info
    torch.manual_seed(0)
    model = create_model("ddpm_tiny", info.num_classes, info.in_channels, info.image_size)
    model.unet.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fit_diffusion(model, digits_splits.train, info, DiffusionTrainConfig(steps=2, batch_size=8, warmup=1,
                                                                             ema=False, device="cpu"))
        sample(model, [0, 1], steps=2)
        run_method("ddpm_finetune", model, digits_class3, {"steps": 2, "batch_size": 8}, seed=0, device="cpu")
        assert torch.get_num_threads() == threads
        # 2 training steps, 2 DDIM steps (guidance batches the conditional and null passes), 2 unlearning steps
        assert len(seen) == 2 + 2 + 2 and set(seen) == {threads}
    finally:
        torch.set_num_threads(before)
