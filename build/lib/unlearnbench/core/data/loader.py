"""The device-resident fast loader: float batches in [0, 1] from uint8 sets, augmented on the device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from unlearnbench.core.data.types import DatasetInfo, TensorSet
from unlearnbench.core.errors import DataError


def augment_batch(
    x: torch.Tensor,
    padding: int,
    hflip: bool,
    generator: torch.Generator | None = None,
    *,
    offsets: torch.Tensor | None = None,
    flips: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop with zero padding + horizontal flip on a uint8 batch, on its own device.

    ``offsets`` (2, B) and ``flips`` (B,) may be given already on the device; otherwise they are
    drawn from ``generator`` (CPU, so a seed gives the same crops on CPU and GPU).
    """
    b, _, h, w = x.shape
    if padding > 0:
        if offsets is None:
            offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(x.device)
        xp = F.pad(x, (padding, padding, padding, padding))
        rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, :, None]
        cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None]
        # Advanced indexing around the channel slice yields (B, H, W, C).
        x = xp[batch, :, rows, cols].permute(0, 3, 1, 2)
    if hflip:
        if flips is None:
            flips = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    return x


class Loader:
    """Batches of float images in [0, 1] straight from a device-resident ``TensorSet``."""

    def __init__(
        self,
        data: TensorSet,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: DatasetInfo | None = None,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
    ) -> None:
        if len(data) == 0:
            raise DataError(f"The {data.name or 'data'} set is empty.")
        self.data = data
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment if augment is not None and (augment.crop_padding or augment.hflip) else None
        self.drop_last = drop_last and len(data) >= batch_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.channels_last = channels_last

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.data)
        dev = self.data.device
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(dev)
        aug = self.augment
        if aug is not None:
            # Draw the whole epoch's crops and flips at once: a host-to-device copy per batch
            # would stall the CPU behind the GPU queue every step (measured: -40 % on an H100).
            offsets = torch.randint(0, 2 * aug.crop_padding + 1, (2, n), generator=self.generator).to(dev)
            flips = (torch.rand(n, generator=self.generator) < 0.5).to(dev)
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            pos = order[sl]
            x = self.data.x[pos]
            if aug is not None:
                x = augment_batch(x, aug.crop_padding, aug.hflip, offsets=offsets[:, sl], flips=flips[sl])
            xf = x.float().div_(255)
            if self.channels_last:
                xf = xf.contiguous(memory_format=torch.channels_last)
            yield xf, self.data.y[pos]
