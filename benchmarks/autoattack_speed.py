"""AutoAttack speed and fidelity: the platform's ``autoattack`` vs ``pyautoattack``, side by side.

Both run standard AutoAttack (APGD-CE → APGD-T 9×100 → FAB-T 9×100 → Square 5000) with the same
seed on the same model, points and device; the reference uses ``batch_size`` = ``--batch-size``
(250 by default, as in its scripts) and the platform uses the same value as its random-stream
chunk, so the per-point verdicts are expected to agree (exactly on a CPU; on a GPU up to
kernel-level float differences between batch shapes). Printed: images/s, robust accuracy,
per-stage seconds, how many points' verdicts differ, the largest difference between the two
adversarial images of a point both broke, the speed ratio, and a Markdown row for
benchmarks/README.md.

Models:
- ``cnn`` (default): the small CNN trained on sklearn's digits (8×8, embedded data), eps 0.1;
- ``fashion``: the same CNN on real Fashion-MNIST (28×28; Debian's ``dataset-fashion-mnist`` or
  ``--data-root``), trained on ``--train-size`` images, usually with ``--adv-train pgd_at``; eps 0.1;
- ``resnet18``: ResNet-18 (CIFAR variant) on CIFAR-10-shaped data — the real CIFAR-10 test set if
  ``--data-root`` has it, else seeded synthetic 32×32 data — trained for ``--train-epochs``, with
  ``--adv-train fast_at|pgd_at`` so that robust accuracy is not trivially 0; eps 8/255.

    python benchmarks/autoattack_speed.py --device cpu --n 100
    python benchmarks/autoattack_speed.py --device cpu --model fashion --adv-train pgd_at --train-epochs 3 --n 100
    python benchmarks/autoattack_speed.py --device cuda --model fashion --adv-train pgd_at --train-epochs 10 --n 1000 --train-size 60000
    python benchmarks/autoattack_speed.py --device cuda --model resnet18 --n 1000 --adv-train fast_at --train-epochs 10
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import time
import warnings

import torch

from unlearnbench.core.data import DataSource, make_synthetic, prepare, split_train_val
from unlearnbench.core.errors import DataError
from unlearnbench.core.models import create_model
from unlearnbench.core.runtime import resolve_device
from unlearnbench.core.train import TrainConfig, fit, recipe_for
from unlearnbench.robust.evaluate import robust_accuracy
from unlearnbench.robust.threat import ThreatModel


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _StageTimes(logging.Handler):
    """Collects pyautoattack's 'robust accuracy after X: ... (total time T s)' lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("robust accuracy after"):
            self.lines.append(msg)


def build(args, device: torch.device):
    if args.model == "cnn":
        splits, _ = prepare("digits", split_seed=0, device=device)
        info = splits.info
        cfg = TrainConfig(**{**recipe_for("digits"), "epochs": args.train_epochs or 20, "device": str(device), "seed": 0})
        test = splits.test
        eps = args.eps or 0.1
    elif args.model == "fashion":
        splits, _ = prepare("fashion-mnist", split_seed=0, device=device, source=DataSource.from_env(args.data_root))
        info = splits.info
        keep = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[: args.train_size]
        splits = dataclasses.replace(splits, train=splits.train.select(keep.sort().values.to(splits.train.y.device)))
        cfg = TrainConfig(**{**recipe_for("digits"), "epochs": args.train_epochs or 3, "batch_size": 128,
                             "device": str(device), "seed": 0})
        test = splits.test
        eps = args.eps or 0.1
    else:
        try:
            splits, _ = prepare("cifar10", split_seed=0, device=device, source=DataSource.from_env(args.data_root))
        except DataError:  # no CIFAR-10 files here: same shapes, synthetic content
            raw = make_synthetic(n_train=args.train_size, n_test=max(args.n, 1000), size=32, noise=0.25, seed=0)
            splits = split_train_val(raw, 0, 0.1)
        info = splits.info
        cfg = TrainConfig(**{**recipe_for("cifar10"), "epochs": args.train_epochs or 5, "device": str(device),
                             "seed": 0, "augment": True})
        test = splits.test
        eps = args.eps or 8 / 255
    torch.manual_seed(0)  # create_model draws its initial weights from the global generator
    model = create_model("cnn" if args.model == "fashion" else args.model, info.num_classes, info.in_channels, info.image_size, info.mean, info.std)
    t0 = time.perf_counter()
    if args.adv_train:
        from unlearnbench.robust.train import adversarial_fit

        adversarial_fit(model, splits.train, splits.val, info, cfg,
                        {"method": args.adv_train, "eps": eps, "steps": 7, "seed": 0})
    else:
        fit(model, splits.train.to(device), splits.val.to(device), info, cfg)
    print(f"trained {args.model} in {time.perf_counter() - t0:.1f} s"
          + (f" ({args.adv_train} adversarial training)" if args.adv_train else ""))
    return model.to(device).eval(), test, eps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--model", choices=("cnn", "fashion", "resnet18"), default="cnn")
    p.add_argument("--norm", choices=("Linf", "L2"), default="Linf")
    p.add_argument("--eps", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=250, help="reference batch size = platform chunk")
    p.add_argument("--max-batch", type=int, default=0, help="platform: points attacked together (0 = auto)")
    p.add_argument("--train-epochs", type=int, default=0)
    p.add_argument("--adv-train", choices=("fast_at", "pgd_at", "trades"), default=None)
    p.add_argument("--train-size", type=int, default=10000,
                   help="training images: synthetic ones for resnet18 without CIFAR-10, a seeded subset for fashion")
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.add_argument("--order", choices=("ref-first", "platform-first"), default="ref-first")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = False  # same kernels for both runs; no autotuning bias
    model, test, eps = build(args, device)
    tset = test.select(torch.arange(min(args.n, len(test))).to(test.y.device))
    x = (tset.x.float() / 255).to(device)
    y = tset.y.to(device)
    n = len(y)
    threat = ThreatModel(args.norm, eps)
    warnings.simplefilter("ignore")

    from pyautoattack import AutoAttack

    def run_ref():
        aa = AutoAttack(model, device=device, eps=eps, norm=args.norm, seed=0, version="standard")
        handler = _StageTimes()
        aa.logger.setLevel(logging.DEBUG)
        aa.logger.propagate = False
        aa.logger.addHandler(handler)
        sync(device)
        t = time.perf_counter()
        x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=args.batch_size)
        sync(device)
        secs = time.perf_counter() - t
        with torch.no_grad():
            robust = torch.cat([model(x_adv[i : i + 500]).argmax(1) for i in range(0, n, 500)]) == y
        return secs, robust.cpu(), handler.lines, x_adv.cpu()

    def run_platform():
        sync(device)
        t = time.perf_counter()
        res = robust_accuracy(model, tset, "autoattack", threat, seed=0, batch_size=args.batch_size,
                              config={"max_batch": args.max_batch, "chunk": args.batch_size}, return_adv=True)
        sync(device)
        return time.perf_counter() - t, res

    # Warm-up (CUDA context, kernels) on a few points, untimed, so neither side pays it.
    robust_accuracy(model, tset, "pgd", threat, n=min(n, 16), config={"steps": 2})

    if args.order == "ref-first":
        t_ref, r_ref, lines, x_ref = run_ref()
        t_pl, res = run_platform()
    else:
        t_pl, res = run_platform()
        t_ref, r_ref, lines, x_ref = run_ref()

    acc_ref = 100 * r_ref.float().mean().item()
    differ = int((res.robust != r_ref).sum())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    x_cpu = x.cpu()
    both = ~res.robust & ~r_ref & (res.x_adv != x_cpu).flatten(1).any(1) & (x_ref != x_cpu).flatten(1).any(1)
    max_diff = (res.x_adv[both] - x_ref[both]).abs().max().item() if both.any() else float("nan")
    print(f"\n{args.model} on {name}, n={n}, {args.norm} eps={eps:.4g}, clean {res.clean_acc:.1f}%")
    print(f"{'':12}{'seconds':>10}{'img/s':>10}{'robust %':>10}")
    print(f"{'pyautoattack':12}{t_ref:10.1f}{n / t_ref:10.2f}{acc_ref:10.2f}")
    print(f"{'platform':12}{t_pl:10.1f}{n / t_pl:10.2f}{res.robust_acc:10.2f}")
    # pyautoattack logs cumulative time after each stage; turn it into per-stage seconds.
    ref_stages, prev = {}, 0.0
    for line in lines:
        m = re.match(r"robust accuracy after (\S+): ([\d.]+)% \(total time ([\d.]+) s\)", line)
        if m:
            ref_stages[m.group(1).lower()] = (float(m.group(2)), float(m.group(3)) - prev)
            prev = float(m.group(3))
    print(f"\n{'stage':10}{'ref robust %':>14}{'ref s':>9}{'platform %':>12}{'platform s':>12}{'ratio':>8}")
    for k, v in res.stages.items():
        if k == "clean":
            continue
        r_acc, r_s = ref_stages.get(k, (float("nan"), float("nan")))
        p_s = res.stage_seconds.get(k, float("nan"))
        print(f"{k:10}{r_acc:14.2f}{r_s:9.1f}{100 * v / n:12.2f}{p_s:12.1f}{r_s / p_s if p_s else float('nan'):8.2f}")
    print(f"points whose verdict differs: {differ} of {n}")
    print(f"max |x_adv - x_adv_ref| over the {int(both.sum())} points both broke: {max_diff:.3g}")
    print(f"speed ratio platform / pyautoattack: {t_ref / t_pl:.2f}x")
    what = f"{args.model}" + (f" {args.adv_train}" if args.adv_train else "") + f", {args.norm} {eps:.4g}"
    print(f"\n| {name} | {what} | {n} | {t_ref:.0f} s | {t_pl:.0f} s | {t_ref / t_pl:.2f}x | "
          f"{acc_ref:.1f} / {res.robust_acc:.1f} | {differ} (max image diff {max_diff:.1g}) |")


if __name__ == "__main__":
    main()
