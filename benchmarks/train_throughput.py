"""Training throughput: the platform's loop vs a reference-style pipeline, side by side.

Platform: device-resident uint8 data, crop+flip on the device in batches, batch 512, bf16 autocast
+ channels_last (CUDA, or CPUs with native bf16). Reference style (the SalUn/Unlearn-Sparse code):
per-image PIL RandomCrop(32, 4) + RandomHorizontalFlip + ToTensor in a DataLoader, fp32, batch 256.
Same ResNet-18 (CIFAR variant), same CIFAR-10-shaped random data. The first epoch of each is a
warm-up and is not timed.

    python benchmarks/train_throughput.py --device auto --n 20480 --epochs 3 [--compile --compile-mode reduce-overhead]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unlearnbench.core.data import DatasetInfo, TensorSet
from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import resolve_device
from unlearnbench.core.train import TrainConfig, cpu_has_bf16, fit

INFO = DatasetInfo("cifar10-shaped", 10, 3, 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), crop_padding=4, hflip=True)


def platform(
    x: np.ndarray, y: np.ndarray, device: torch.device, epochs: int, compile: bool, bf16: bool = True,
    compile_mode: str = "default",
) -> float:
    data = TensorSet(torch.from_numpy(x), torch.from_numpy(y), torch.arange(len(y))).to(device)
    model = create_model("resnet18", 10, 3, 32, INFO.mean, INFO.std)
    cfg = TrainConfig(epochs=epochs, batch_size=512, lr=0.2, nesterov=True, warmup=1 / 15, label_smoothing=0.1,
                      amp=bf16, cpu_bf16=bf16, keep_best=False, device=str(device), seed=0, compile=compile,
                      compile_mode=compile_mode)
    result = fit(model, data, None, INFO, cfg)
    timed = result.history[1:]
    n_per_epoch = (len(y) // cfg.batch_size) * cfg.batch_size
    return n_per_epoch * len(timed) / sum(r["epoch_seconds"] for r in timed)


class PILDataset(torch.utils.data.Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        import torchvision.transforms as T

        self.x = x.transpose(0, 2, 3, 1)  # HWC like torchvision's CIFAR10
        self.y = y
        self.tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.x[i])), int(self.y[i])


def reference(x: np.ndarray, y: np.ndarray, device: torch.device, epochs: int, workers: int) -> float:
    torch.manual_seed(0)
    model = create_model("resnet18", 10, 3, 32, INFO.mean, INFO.std).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = torch.utils.data.DataLoader(
        PILDataset(x, y), batch_size=256, shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
        drop_last=True, persistent_workers=workers > 0,
    )
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        n = 0
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            n += len(yb)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if epoch > 0:
            seen += n
            seconds += time.perf_counter() - t0
    return seen / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=None, help="images (default 50000 on CUDA, 2048 on CPU)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per pipeline; the first is a warm-up")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--compile", action="store_true", help="also time the platform loop with torch.compile")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile mode for --compile, e.g. reduce-overhead (CUDA graphs on CUDA)")
    ap.add_argument("--fp32", action="store_true", help="also time the platform loop without bf16 autocast")
    args = ap.parse_args()
    device = resolve_device(args.device)
    n = args.n or (50000 if device.type == "cuda" else 2048)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.int64)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads (native bf16: {cpu_has_bf16()})"
    print(f"device: {name}; {n} CIFAR-10-shaped images, ResNet-18, {args.epochs} epochs each (first untimed)")
    # Platform first: the reference's worker processes were seen to slow a later run by ~10 %.
    plat = platform(x, y, device, args.epochs, compile=False)
    print(f"platform  (device-resident uint8, on-device aug, bf16 + channels_last, batch 512): {plat:10.1f} img/s")
    ref = reference(x, y, device, args.epochs, args.workers)
    print(f"reference (PIL per image + DataLoader[{args.workers} workers], fp32, batch 256): {ref:10.1f} img/s")
    print(f"ratio platform/reference: {plat / ref:.2f}x")
    if args.compile:
        comp = platform(x, y, device, args.epochs, compile=True, compile_mode=args.compile_mode)
        print(f"platform + torch.compile (mode {args.compile_mode}):{'':<{38 - len(args.compile_mode)}}{comp:10.1f} img/s")
        print(f"ratio platform+compile/reference: {comp / ref:.2f}x")
    if args.fp32:  # how much of the ratio is the data path alone
        fp32 = platform(x, y, device, args.epochs, compile=False, bf16=False)
        print(f"platform in fp32 (--fp32):                                             {fp32:10.1f} img/s")
        print(f"ratio platform fp32/reference: {fp32 / ref:.2f}x")


if __name__ == "__main__":
    main()
