"""Class-conditional DDPMs (the generation task): model, training with EMA, guided sampling.

The network is diffusers' ``UNet2DModel`` with a class embedding of ``num_classes + 1`` rows: the
last row is the *null* class of classifier-free guidance (the reference, OPTML-Group/Unlearn-
Saliency ``DDPM/models/diffusion.py``, learns one null embedding vector; an extra embedding row is
the same thing). Training drops the condition with probability ``cond_drop_prob`` (0.1) and
samples timesteps antithetically (``t`` and ``T-1-t``), as the reference's ``train.py``. The
noise schedule is diffusers' ``DDPMScheduler`` (linear betas 1e-4..0.02 over 1000 steps, the
reference's); sampling is diffusers' ``DDIMScheduler`` with the reference's guidance
``eps = (1 + w) * eps(x, c) - w * eps(x, null)`` (w = 2.0) and ``eta`` (1.0 in the reference, whose
1000 "generalized" steps are then DDPM ancestral sampling).

The registry entries (``ddpm_tiny``, ``ddpm_cifar10``, task ``generation``) live in
``core.models``, which builds them from ``ARCHS`` here.

Images are [0, 1] tensors outside the model (the platform's convention); the diffusion runs in
[-1, 1] (``x * 2 - 1``), the reference's ``rescaled: true``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from unlearnbench.core.config import check, configclass
from unlearnbench.core.data import DatasetInfo, TensorSet
from unlearnbench.core.errors import ConfigError, ModelError
from unlearnbench.core.runtime import resolve_device

log = logging.getLogger(__name__)

TASK = "generation"


def _diffusers():
    try:
        import diffusers
    except ImportError:  # pragma: no cover - diffusers is a dependency; a broken install says so
        raise ModelError("Generation models need the diffusers package; install it with `pip install diffusers`.") from None
    return diffusers


@dataclass(frozen=True)
class UNetArch:
    """A ``UNet2DModel`` shape. ``attention``: the levels (0 = full resolution) with self-attention."""

    channels: tuple[int, ...]
    layers_per_block: int
    attention: tuple[int, ...] = ()
    norm_groups: int = 32
    dropout: float = 0.0


ARCHS: dict[str, UNetArch] = {
    # ~0.65M parameters: trains on digits (8x8) or Fashion-MNIST (28x28) on 2 CPU cores in minutes.
    "ddpm_tiny": UNetArch(channels=(32, 64), layers_per_block=1, norm_groups=8),
    # The reference's CIFAR-10 network (cifar10_train.yml: ch 128, ch_mult [1, 2, 2, 2], 2 res blocks,
    # attention at 16x16, dropout 0.1), ~36M parameters; for GPUs.
    "ddpm_cifar10": UNetArch(channels=(128, 256, 256, 256), layers_per_block=2, attention=(1,), norm_groups=32,
                             dropout=0.1),
}


class ConditionalDDPM(nn.Module):
    """A class-conditional noise predictor ``eps(x_t, t, c)`` with a null class ``num_classes``."""

    task = TASK

    def __init__(self, arch: UNetArch, num_classes: int, in_channels: int, image_size: int,
                 timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__()
        d = _diffusers()
        levels = len(arch.channels)
        if image_size % (2 ** (levels - 1)):
            raise ModelError(f"A {levels}-level UNet needs an image size divisible by {2 ** (levels - 1)}; got {image_size}.")
        down = tuple("AttnDownBlock2D" if i in arch.attention else "DownBlock2D" for i in range(levels))
        up = tuple("AttnUpBlock2D" if (levels - 1 - i) in arch.attention else "UpBlock2D" for i in range(levels))
        self.unet = d.UNet2DModel(
            sample_size=image_size, in_channels=in_channels, out_channels=in_channels,
            block_out_channels=arch.channels, layers_per_block=arch.layers_per_block,
            down_block_types=down, up_block_types=up, norm_num_groups=arch.norm_groups,
            dropout=arch.dropout, num_class_embeds=num_classes + 1,
        )
        self.arch = arch
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.timesteps = timesteps
        self.beta_start, self.beta_end = beta_start, beta_end

    def fresh(self, seed: int) -> ConditionalDDPM:
        """A new model of the same architecture and schedule with weights initialised under ``seed``
        (on the CPU, under a forked RNG: the caller's random stream is untouched)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return ConditionalDDPM(self.arch, self.num_classes, self.in_channels, self.image_size, self.timesteps,
                                   self.beta_start, self.beta_end)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The predicted noise for noisy images ``x`` ([-1, 1] space) at timesteps ``t`` under classes ``c``."""
        return self.unet(x, t, class_labels=c).sample

    def guided(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor, guidance: float) -> torch.Tensor:
        """Classifier-free guidance as the reference: ``(1 + w) * eps(c) - w * eps(null)``."""
        if guidance == 0:
            return self(x, t, c)
        null = torch.full_like(c, self.null_class)
        both = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, null]))
        cond, uncond = both.chunk(2)
        return (1 + guidance) * cond - guidance * uncond

    def train_scheduler(self):
        return _diffusers().DDPMScheduler(num_train_timesteps=self.timesteps, beta_schedule="linear",
                                          beta_start=self.beta_start, beta_end=self.beta_end)


def is_generator(model: nn.Module) -> bool:
    return isinstance(model, ConditionalDDPM)


# ----------------------------------------------------------------------------- the loss


def to_model_space(x01: torch.Tensor) -> torch.Tensor:
    return x01 * 2 - 1


def noise_and_times(x0: torch.Tensor, timesteps: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise like ``x0`` and antithetic timesteps (``t`` and ``T-1-t``), as the reference."""
    n = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    t = torch.randint(0, timesteps, (n // 2 + 1,), generator=generator)
    t = torch.cat([t, timesteps - t - 1])[:n].to(x0.device)
    return noise, t


def noisy(model: ConditionalDDPM, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    abar = model.train_scheduler().alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def diffusion_loss(model: ConditionalDDPM, x01: torch.Tensor, c: torch.Tensor, generator: torch.Generator,
                   cond_drop_prob: float = 0.0, guidance: float | None = None) -> torch.Tensor:
    """The reference's ``noise_estimation_loss_conditional``: Σ over pixels of (ε − ε̂)², batch mean.

    ``cond_drop_prob`` replaces each condition by the null class with that probability (training);
    ``guidance`` evaluates the guided prediction instead (the reference's mask-generation loss).
    """
    x0 = to_model_space(x01)
    noise, t = noise_and_times(x0, model.timesteps, generator)
    xt = noisy(model, x0, noise, t)
    if cond_drop_prob > 0:
        drop = torch.rand(c.shape[0], generator=generator).to(c.device) < cond_drop_prob
        c = torch.where(drop, torch.full_like(c, model.null_class), c)
    out = model.guided(xt, t, c, guidance) if guidance is not None else model(xt, t, c)
    return (noise - out).square().sum(dim=(1, 2, 3)).mean()


# ----------------------------------------------------------------------------- training


@configclass
class DiffusionTrainConfig:
    """Training of a conditional DDPM (the reference: Adam 2e-4, batch 128, clip 1.0, EMA 0.9999,
    cond-drop 0.1, 800k iterations on CIFAR-10; the defaults here are the CPU-sized digits run)."""

    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    grad_clip: float = 1.0
    ema: bool = True
    ema_rate: float = 0.995
    cond_drop_prob: float = 0.1
    warmup: int = 100  # linear lr warm-up steps (the reference has none; a large tiny-model lr needs it)
    hflip: bool | None = None  # random horizontal flips (default: the dataset's, CIFAR yes, digits no)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps must be at least 1.")
        check(self.batch_size >= 1, "batch_size must be at least 1.")
        check(self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number.")
        check(self.grad_clip > 0, "grad_clip must be positive.")
        check(0 <= self.ema_rate < 1, "ema_rate must lie in [0, 1).")
        check(0 <= self.cond_drop_prob < 1, "cond_drop_prob must lie in [0, 1).")
        check(self.warmup >= 0, "warmup must be 0 or more steps.")


@dataclass
class DiffusionFit:
    model: ConditionalDDPM  # the EMA weights when ema is on
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class EMA:
    """Exponential moving average of parameters (the reference's ``EMAHelper``); buffers are copied."""

    def __init__(self, model: nn.Module, rate: float) -> None:
        self.rate = rate
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for s, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
            s.mul_(self.rate).add_(p.detach(), alpha=1 - self.rate)
        for s, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            s.copy_(b)


def batches(data: TensorSet, batch_size: int, generator: torch.Generator):
    """Endless shuffled batches (the reference's ``cycle(loader)``), as [0, 1] floats and labels."""
    n = len(data)
    if n == 0:
        raise ConfigError("The training set is empty.")
    while True:
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size].to(data.x.device)
            yield data.x[idx].float() / 255 if data.x.dtype == torch.uint8 else data.x[idx], data.y[idx]


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mask = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(-1), x)


def fit_diffusion(model: ConditionalDDPM, train: TensorSet, info: DatasetInfo, config: DiffusionTrainConfig,
                  *, description: str = "train ddpm") -> DiffusionFit:
    """Train ``model`` in place on ``train`` (Adam, grad-norm clip, EMA); returns the EMA model."""
    from unlearnbench.core.progress import task as progress

    device = resolve_device(config.device)
    model.to(device).train()
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    ema = EMA(model, config.ema_rate) if config.ema else None
    hflip = info.hflip if config.hflip is None else config.hflip
    it = batches(train, config.batch_size, gen)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    running = 0.0
    log_every = max(1, config.steps // 20)
    with progress(description, total=config.steps, unit="steps") as bar:
        for step in range(config.steps):
            for g in opt.param_groups:
                g["lr"] = config.lr * min(1.0, (step + 1) / config.warmup) if config.warmup else config.lr
            x, y = next(it)
            if hflip:
                x = flip(x, gen)
            loss = diffusion_loss(model, x, y, gen, cond_drop_prob=config.cond_drop_prob)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            running += float(loss.detach())
            if (step + 1) % log_every == 0 or step + 1 == config.steps:
                k = (step % log_every) + 1
                history.append({"step": step + 1, "train_loss": running / k})
                bar.advance(1)
                bar.report(f"loss {running / k:.4f}", images=k * config.batch_size)  # a line per 5 % in logs
                running = 0.0
            else:
                bar.advance(1)
    seconds = time.perf_counter() - t0
    out = ema.shadow if ema is not None else model
    if ema is not None:
        model.load_state_dict(out.state_dict())  # the caller's model holds the weights it gets back
    model.eval()
    return DiffusionFit(model, seconds, history)


# ----------------------------------------------------------------------------- sampling


@configclass
class SampleConfig:
    """Guided DDIM sampling (the reference: guidance 2.0, 1000 steps, eta 1.0)."""

    guidance: float = 2.0
    steps: int = 50
    eta: float = 0.0
    batch_size: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.steps >= 1, "steps must be at least 1.")
        check(self.guidance >= 0, "guidance must be 0 or more (0 = no guidance).")
        check(0 <= self.eta <= 1, "eta must lie in [0, 1] (0 = deterministic DDIM, 1 = DDPM-like).")
        check(self.batch_size >= 1, "batch_size must be at least 1.")


@torch.no_grad()
def sample(model: ConditionalDDPM, labels: torch.Tensor | list[int], config: SampleConfig | None = None,
           **overrides: Any) -> torch.Tensor:
    """Images ([0, 1], on the CPU) for class ``labels``, deterministic under ``config.seed``.

    The initial noise and every DDIM noise draw come from one CPU generator seeded with
    ``config.seed``, batch after batch, so the same seed gives the same images on any batch size
    of a given device. ``model.training`` is restored.
    """
    from unlearnbench.core.config import from_dict, to_dict

    if config is None or overrides:
        config = from_dict(SampleConfig, {**(to_dict(config) if config else {}), **overrides})
    if not is_generator(model):
        raise ModelError(f"Sampling needs a conditional DDPM (a generation model), not {type(model).__name__}.")
    labels = torch.as_tensor(labels, dtype=torch.long).flatten().cpu()
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= model.num_classes):
        raise ConfigError(f"Class labels must lie in 0..{model.num_classes - 1}; got {labels.tolist()[:10]}.")
    d = _diffusers()
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(config.seed)
    shape = (model.in_channels, model.image_size, model.image_size)
    noise = torch.randn((len(labels), *shape), generator=gen)  # drawn up front: independent of batch size
    out = []
    try:
        for i in range(0, len(labels), config.batch_size):
            sched = d.DDIMScheduler(num_train_timesteps=model.timesteps, beta_schedule="linear",
                                    beta_start=model.beta_start, beta_end=model.beta_end, clip_sample=False,
                                    set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
            sched.set_timesteps(config.steps)
            x = noise[i:i + config.batch_size].to(device)
            c = labels[i:i + config.batch_size].to(device)
            for t in sched.timesteps:
                tt = torch.full((x.shape[0],), int(t), device=device, dtype=torch.long)
                eps = model.guided(x, tt, c, config.guidance)
                x = sched.step(eps, t, x, eta=config.eta, generator=gen).prev_sample
            out.append(((x.clamp(-1, 1) + 1) / 2).cpu())
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros((0, *shape))


def grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """A (C, H, W) grid of ``images`` (N, C, H, W) in [0, 1] with ``nrow`` images per row, 1-pixel gaps."""
    n, c, h, w = images.shape
    rows = max(1, math.ceil(n / nrow))
    out = torch.ones((c, rows * (h + 1) + 1, nrow * (w + 1) + 1))
    for k in range(n):
        r, q = divmod(k, nrow)
        out[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = images[k]
    return out


def save_png(image: torch.Tensor, path, scale: int = 1) -> None:
    """Write a (C, H, W) [0, 1] image as PNG (nearest-neighbour upscaled ``scale`` times), atomically."""
    from PIL import Image

    from unlearnbench.core.io import atomic_write

    img = image
    if scale > 1:
        img = img.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    arr = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    with atomic_write(path) as fh:
        Image.fromarray(arr).save(fh, format="PNG")
