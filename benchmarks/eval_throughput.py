"""Evaluation throughput: the platform's Evaluator vs a reference-style DataLoader path, side by side.

Both compute forget / retain / val / test accuracy and MIA-Efficacy (SalUn's confidence SVC) for
the same model (ResNet-18, CIFAR variant, unless --model) on the same CIFAR-10-shaped data (random 10 % forgotten,
|test| = n / 5).

- reference (the SalUn / Unlearn-Sparse code path): uint8 HWC arrays wrapped in a Dataset that
  converts every image to PIL and applies ``transforms.ToTensor()``, a ``DataLoader`` (batch 256),
  fp32; ``validate`` over the four loaders with a ``.item()`` per batch, then
  ``SVC_MIA_forget_efficacy``, which runs the model again over retain[:|test|], test and forget
  and fits ``SVC(C=3, rbf, gamma='auto')`` on the true-class probability. (The original fits five
  SVCs there; only the reported confidence one is timed, which favours the reference.)
- platform: ``Evaluator(metrics=[accuracies, ua, mia_efficacy])`` on device-resident uint8 data
  (the copy to the device is included in the time): one forward pass per split, shared by every
  metric, and the default ``lowrank`` SVC solver (the same SVC problem solved in the kernel's exact
  finite feature map; see ``benchmarks/mia_svc_speed.py`` for it alone).

The data is learnable synthetic data (class prototypes + noise, ``core.data.make_synthetic``); with
``--train-epochs`` the model is first trained on it so confidences look like a trained model's
(libsvm's cost depends on that distribution).

    python benchmarks/eval_throughput.py --device auto --n 50000 --train-epochs 2
    python benchmarks/eval_throughput.py --device cpu --n 2000
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unlearnbench.core.data import make_synthetic, make_unlearn_data, split_train_val
from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import resolve_device
from unlearnbench.core.train import TrainConfig, fit
from unlearnbench.eval.engine import Evaluator

METRICS = ["forget_acc", "retain_acc", "val_acc", "test_acc", "ua", "mia_efficacy"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PILDataset(torch.utils.data.Dataset):
    """torchvision-CIFAR10 style: HWC uint8 in memory, PIL + ToTensor per image."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        import torchvision.transforms as T

        self.x = x.cpu().numpy().transpose(0, 2, 3, 1)
        self.y = y.cpu().numpy()
        self.tf = T.Compose([T.ToTensor()])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.x[i])), int(self.y[i])


def reference(model: torch.nn.Module, data, device: torch.device, workers: int) -> dict[str, float]:
    """SalUn-style evaluation; returns accuracies, MIA-Efficacy and stage times."""
    from sklearn.svm import SVC

    def loader(ds):
        return torch.utils.data.DataLoader(ds, batch_size=256, shuffle=False, num_workers=workers,
                                           pin_memory=device.type == "cuda")

    sets = {name: PILDataset(getattr(data, name).x, getattr(data, name).y) for name in ("retain", "forget", "val", "test")}
    model = model.to(device).eval()
    out: dict[str, float] = {}
    sync(device)
    t0 = time.perf_counter()
    for name, ds in sets.items():  # trainer.validate: loss and top-1 with a .item() per batch
        correct = seen = 0
        loss_sum = 0.0
        with torch.no_grad():
            for x, y in loader(ds):
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y).float().item() * len(y)
                correct += (logits.argmax(1) == y).float().sum().item()
                seen += len(y)
        out[f"{name}_acc"] = 100.0 * correct / seen
    sync(device)
    out["time_accuracy"] = time.perf_counter() - t0

    def collect_prob(ds):
        probs, labels = [], []
        with torch.no_grad():
            for x, y in loader(ds):
                probs.append(F.softmax(model(x.to(device)), dim=-1).data)
                labels.append(y)
        return torch.cat(probs).cpu(), torch.cat(labels)

    t0 = time.perf_counter()
    n_test = len(sets["test"])
    shadow_train = torch.utils.data.Subset(sets["retain"], range(n_test))
    feats = {}
    for name, ds in (("shadow_train", shadow_train), ("shadow_test", sets["test"]), ("target", sets["forget"])):
        p, y = collect_prob(ds)
        feats[name] = p[torch.arange(len(y)), y]
    sync(device)
    out["time_mia_predictions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = torch.cat([feats["shadow_train"], feats["shadow_test"]]).numpy().reshape(-1, 1)
    y = np.concatenate([np.ones(len(feats["shadow_train"])), np.zeros(len(feats["shadow_test"]))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    out["mia_efficacy"] = 100.0 * (1 - clf.predict(feats["target"].numpy().reshape(-1, 1)).mean())
    out["time_svc"] = time.perf_counter() - t0
    out["time_total"] = out["time_accuracy"] + out["time_mia_predictions"] + out["time_svc"]
    return out


def platform(model: torch.nn.Module, data, device: torch.device, amp: bool) -> dict[str, float]:
    model = model.to(device).eval()
    sync(device)
    t0 = time.perf_counter()
    on_device = data.to(device)
    report = Evaluator(metrics=METRICS, amp=amp).evaluate(model, on_device)
    sync(device)
    total = time.perf_counter() - t0
    out = {k: report.values[k] for k in METRICS}
    out.update(time_total=total, time_predictions=report.timings["predictions"], time_svc=report.timings["mia_efficacy"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    ap.add_argument("--n", type=int, default=None, help="training images (default 50000 on CUDA, 2000 on CPU); test = n/5")
    ap.add_argument("--train-epochs", type=int, default=None, help="train the model first (default 2 on CUDA, 0 on CPU)")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="reference DataLoader workers")
    ap.add_argument("--amp", action="store_true", help="also time the platform with bf16 autocast (CUDA)")
    ap.add_argument("--model", default="resnet18",
                    help="model (default resnet18; a small one, e.g. cnn, makes the CIFAR-size run feasible on a CPU)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    n = args.n or (50000 if device.type == "cuda" else 2000)
    epochs = args.train_epochs if args.train_epochs is not None else (2 if device.type == "cuda" else 0)

    raw = make_synthetic(n_train=n, n_test=max(10, n // 5), num_classes=10, channels=3, size=32, seed=0, noise=0.5)
    raw = replace(raw, info=replace(raw.info, name="cifar10-shaped"))
    splits = split_train_val(raw, split_seed=0, val_fraction=0.1)
    data = make_unlearn_data(splits, "random:0.1")
    torch.manual_seed(0)
    model = create_model(args.model, 10, 3, 32, splits.info.mean, splits.info.std)
    if epochs:
        fit(model, splits.train.to(device), None, splits.info,
            TrainConfig(epochs=epochs, batch_size=512, lr=0.2, keep_best=False, device=str(device), seed=0))
    model = model.cpu().eval()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    sizes = {k: len(getattr(data, k)) for k in ("retain", "forget", "val", "test")}
    print(f"device: {name}; {args.model}, CIFAR-10-shaped synthetic data {sizes}, trained {epochs} epoch(s)")
    # Warm-up (cuDNN autotuning, lazy init) so neither side pays it inside the timing.
    Evaluator(metrics=["test_acc"]).evaluate(model.to(device), replace(data, test=data.test.select(torch.arange(min(256, sizes["test"])))).to(device))
    ref = reference(model, data, device, args.workers)
    plat = platform(model, data, device, amp=False)
    print(f"reference (PIL+ToTensor per image, DataLoader[{args.workers} workers], fp32, batch 256): "
          f"{ref['time_total']:.2f} s = accuracy {ref['time_accuracy']:.2f} + MIA forward {ref['time_mia_predictions']:.2f}"
          f" + SVC {ref['time_svc']:.2f}")
    print(f"platform  (device-resident uint8, one pass per split, fp32, batch 1024):          "
          f"{plat['time_total']:.2f} s = predictions {plat['time_predictions']:.2f} + SVC {plat['time_svc']:.2f} + rest")
    fwd_ref = ref["time_accuracy"] + ref["time_mia_predictions"]
    print(f"ratio reference/platform: total {ref['time_total'] / plat['time_total']:.2f}x, "
          f"forward passes {fwd_ref / plat['time_predictions']:.2f}x, SVC {ref['time_svc'] / plat['time_svc']:.0f}x")
    same = all(abs(ref[k] - plat[k]) < 1e-9 for k in ("forget_acc", "retain_acc", "val_acc", "test_acc"))
    # MIA-Efficacy may differ by forget points on the SVC's decision boundary: libsvm stops at
    # tol=1e-3, the platform's solver at the optimum (benchmarks/mia_svc_speed.py shows which is which).
    flips = round(abs(ref["mia_efficacy"] - plat["mia_efficacy"]) * sizes["forget"] / 100)
    print("values (reference | platform): " + ", ".join(f"{k} {ref[k]:.2f} | {plat[k]:.2f}" for k in
          ("forget_acc", "retain_acc", "test_acc", "mia_efficacy")) +
          f"; accuracies identical: {same}; MIA-Efficacy off by {flips} forget point(s) of {sizes['forget']}")
    if args.amp and device.type == "cuda":
        amp = platform(model, data, device, amp=True)
        print(f"platform bf16 (--amp): {amp['time_total']:.2f} s, ratio {ref['time_total'] / amp['time_total']:.2f}x, "
              f"mia_efficacy {amp['mia_efficacy']:.2f}")


if __name__ == "__main__":
    main()
