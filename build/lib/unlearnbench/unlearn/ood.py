"""Out-of-distribution (surrogate) images for retain-free methods (SCAR's distillation set).

SCAR distils the original model into the unlearned one on surrogate images that are not from
the training distribution (10,000 ImageNet images in the paper; the code also offers COCO,
"random images" and Gaussian noise). Two sources here:

* ``synthetic`` — seeded, *structured* images: smooth random fields, oriented gratings,
  checkerboards, random shapes on random backgrounds, and pen-like strokes (random quadratic
  Bézier curves). Pure per-pixel noise is a poor
  surrogate (the network's features barely respond to it); these patterns excite edge and
  texture features the way natural images do, with no data on disk.
* the name of another registered dataset (``cifar100``, ``svhn``, ``fashion-mnist``, ...) — its
  training images, resized to the target size (bilinear, antialiased) and channel-adapted
  (grey → repeated RGB, RGB → luminance).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from unlearnbench.core.data import DATASETS, DatasetInfo, DataSource, TensorSet, load_dataset
from unlearnbench.core.errors import ConfigError

SYNTHETIC = "synthetic"
_FAMILIES = ("smooth", "grating", "checker", "shapes", "strokes")


def _grid(size: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return yy.expand(n, size, size), xx.expand(n, size, size)


def _colours(n: int, channels: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.rand(n, channels, 1, 1, generator=g)
    b = torch.rand(n, channels, 1, 1, generator=g)
    return a, b


def synthetic_images(n: int, channels: int, size: int, seed: int = 0) -> TensorSet:
    """``n`` structured images (uint8), an equal share of each family; ``y`` holds the family id."""
    g = torch.Generator().manual_seed(seed)
    nf = len(_FAMILIES)
    per = [n // nf + (1 if i < n % nf else 0) for i in range(nf)]
    parts = []
    # smooth random fields: low-resolution noise upsampled (scale 2..6 cells)
    k = per[0]
    cells = torch.randint(2, 7, (k,), generator=g)
    smooth = [
        F.interpolate(torch.rand(1, channels, int(c), int(c), generator=g), size=(size, size),
                      mode="bicubic", align_corners=False)[0]
        for c in cells
    ]
    parts.append(torch.stack(smooth) if smooth else torch.empty(0, channels, size, size))
    # oriented sinusoidal gratings with random frequency, phase and two colours
    k = per[1]
    yy, xx = _grid(size, k, g)
    theta = torch.rand(k, 1, 1, generator=g) * math.pi
    freq = 1 + torch.rand(k, 1, 1, generator=g) * (size / 4)
    phase = torch.rand(k, 1, 1, generator=g) * 2 * math.pi
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * freq * (xx * torch.cos(theta) + yy * torch.sin(theta)) + phase)
    a, b = _colours(k, channels, g)
    parts.append(a + (b - a) * wave[:, None])
    # checkerboards with random period and colours
    k = per[2]
    yy, xx = _grid(size, k, g)
    period = 2 + torch.randint(0, max(1, size // 2), (k, 1, 1), generator=g).float()
    board = ((torch.floor(xx * size / period) + torch.floor(yy * size / period)) % 2)
    a, b = _colours(k, channels, g)
    parts.append(a + (b - a) * board[:, None])
    # 1-3 random rectangles / ellipses on a random background
    k = per[3]
    yy, xx = _grid(size, k, g)
    img, _ = _colours(k, channels, g)
    img = img.expand(k, channels, size, size).clone()
    for _ in range(3):
        cy, cx = torch.rand(k, 1, 1, generator=g), torch.rand(k, 1, 1, generator=g)
        ry, rx = 0.1 + 0.3 * torch.rand(k, 1, 1, generator=g), 0.1 + 0.3 * torch.rand(k, 1, 1, generator=g)
        ellipse = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        rect = ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
        use_ellipse = torch.rand(k, 1, 1, generator=g) < 0.5
        present = torch.rand(k, 1, 1, generator=g) < 0.8
        shape = torch.where(use_ellipse, ellipse, rect) & present
        colour, _ = _colours(k, channels, g)
        img = torch.where(shape[:, None], colour.expand_as(img), img)
    parts.append(img)
    # 1-3 strokes: thick quadratic Bézier curves, light on dark or dark on light
    k = per[4]
    yy, xx = _grid(size, k, g)
    ink = torch.zeros(k, size, size)
    t = torch.linspace(0, 1, 4 * size)
    for _ in range(3):
        p = torch.rand(k, 3, 2, generator=g)  # start, control, end points in [0, 1]^2
        curve = ((1 - t)[None, :, None] ** 2 * p[:, None, 0] + 2 * ((1 - t) * t)[None, :, None] * p[:, None, 1]
                 + (t ** 2)[None, :, None] * p[:, None, 2])  # (k, T, 2)
        dist = ((yy[:, :, :, None] - curve[:, None, None, :, 0]) ** 2
                + (xx[:, :, :, None] - curve[:, None, None, :, 1]) ** 2).amin(-1).sqrt()
        width = (0.5 + torch.rand(k, 1, 1, generator=g)) / size
        present = (torch.rand(k, 1, 1, generator=g) < 0.7).float()
        ink = torch.maximum(ink, present * (1 - dist / (2 * width)).clamp(0, 1))
    a, b = _colours(k, channels, g)
    dark_bg = torch.rand(k, 1, 1, 1, generator=g) < 0.7
    bg, fg = torch.where(dark_bg, a * 0.3, 0.7 + 0.3 * a), torch.where(dark_bg, 0.7 + 0.3 * b, b * 0.3)
    parts.append(bg + (fg - bg) * ink[:, None])
    x = torch.cat(parts).clamp(0, 1).mul(255).round().to(torch.uint8)
    y = torch.cat([torch.full((c,), i, dtype=torch.int64) for i, c in enumerate(per)])
    perm = torch.randperm(n, generator=g)
    return TensorSet(x[perm].contiguous(), y[perm], torch.arange(n), None, "ood")


def adapt_images(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """Resize uint8 ``(N, C, H, W)`` images to ``size`` and convert to ``channels`` channels."""
    xf = x.float().div(255)
    if xf.shape[1] != channels:
        if channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114]) if xf.shape[1] == 3 else torch.full((xf.shape[1],), 1 / xf.shape[1])
            xf = (xf * w.view(1, -1, 1, 1)).sum(1, keepdim=True)
        elif xf.shape[1] == 1:
            xf = xf.repeat(1, channels, 1, 1)
        else:
            raise ConfigError(f"Cannot adapt {xf.shape[1]}-channel images to {channels} channels.")
    if xf.shape[-1] != size or xf.shape[-2] != size:
        xf = F.interpolate(xf, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return xf.clamp(0, 1).mul(255).round().to(torch.uint8)


def ood_set(
    source: str, info: DatasetInfo, n: int, seed: int = 0, data_source: DataSource | None = None
) -> TensorSet:
    """The OOD set named by ``source`` adapted to ``info``'s image shape (CPU tensors)."""
    if n < 1:
        raise ConfigError("ood_size must be at least 1.")
    if source == SYNTHETIC:
        return synthetic_images(n, info.in_channels, info.image_size, seed)
    if source not in DATASETS:
        DATASETS.get(source)  # raises the "unknown dataset, did you mean" error
    if source == info.name:
        raise ConfigError(
            f"The OOD set cannot be {source!r}, the dataset being unlearned (its images include the "
            "retain set); pick another dataset or 'synthetic'."
        )
    # The same root, but not the run's --subset (that selects the unlearned dataset's images).
    root = data_source or DataSource.from_env()
    raw = load_dataset(source, DataSource(root.root, root.download))
    g = torch.Generator().manual_seed(seed)
    take = torch.randperm(len(raw.train), generator=g)[: min(n, len(raw.train))]
    x = adapt_images(raw.train.x[take], info.in_channels, info.image_size)
    return TensorSet(x, raw.train.y[take].clone(), torch.arange(len(take)), None, "ood")
