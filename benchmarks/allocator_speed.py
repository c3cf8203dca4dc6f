"""glibc malloc thresholds: CPU forward passes and training steps, default vs tuned, side by side.

PyTorch's CPU allocator is glibc malloc. Activation buffers of a CIFAR ResNet batch are megabytes,
above glibc's mmap threshold, so every batch maps fresh pages and unmaps them again: the kernel
zero-fills and faults in each page (tens of millions of minor page faults per run). Raising the
mmap threshold and the trim threshold keeps those buffers in the heap and reuses them.

Each measurement runs in a fresh child process (the environment must be set before the
allocator starts), alternating default and tuned, ``--rounds`` times each; the child times
``--seconds`` of work after one warm-up batch and reports images/s and minor page faults.

    python benchmarks/allocator_speed.py                      # ResNet-18 forward, batch 256
    python benchmarks/allocator_speed.py --mode train --batch 128
    python benchmarks/allocator_speed.py --model cnn --image 8 --channels 1   # digits-sized
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from unlearnbench._malloc import TUNED

CHILD = "--child"


def child(args: argparse.Namespace) -> None:
    import torch

    from unlearnbench.core.models import create_model

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = create_model(args.model, 10, args.channels, args.image, (0.5,) * args.channels, (0.25,) * args.channels)
    x = torch.rand(args.batch, args.channels, args.image, args.image)
    y = torch.randint(0, 10, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        if args.mode == "forward":
            model.eval()
            with torch.no_grad():
                model(x)
        else:
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    step()  # warm-up: one-time allocations and oneDNN kernel selection
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        step()
        n += args.batch
    seconds = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    print(json.dumps({"img_s": n / seconds, "faults_per_batch": faults / (n / args.batch)}))


def measure(args: argparse.Namespace, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(TUNED if tuned else {})
    env["UNLEARNBENCH_MALLOC"] = "off"  # this script sets the variables itself
    argv = [sys.executable, __file__, CHILD, *sys.argv[1:]]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--mode", choices=["forward", "train"], default="forward")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--image", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(CHILD, action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    print(f"{args.model} {args.mode}, batch {args.batch} of {args.channels}x{args.image}x{args.image}, "
          f"{args.threads} thread(s), {args.rounds} x {args.seconds:g} s each; tuned = "
          + " ".join(f"{k}={v}" for k, v in TUNED.items()))
    results: dict[str, list[dict]] = {"default": [], "tuned": []}
    for r in range(args.rounds):
        # Alternate which goes first: a shared machine's load drifts.
        for name in (("default", "tuned") if r % 2 == 0 else ("tuned", "default")):
            res = measure(args, name == "tuned")
            results[name].append(res)
            print(f"  round {r + 1} {name:7s}: {res['img_s']:8.1f} img/s, {res['faults_per_batch']:9.0f} page faults/batch")
    med = {k: statistics.median(x["img_s"] for x in v) for k, v in results.items()}
    faults = {k: statistics.median(x["faults_per_batch"] for x in v) for k, v in results.items()}
    print(f"median default {med['default']:.1f} img/s ({faults['default']:.0f} faults/batch), "
          f"tuned {med['tuned']:.1f} img/s ({faults['tuned']:.0f} faults/batch): "
          f"ratio {med['tuned'] / med['default']:.2f}x")


if __name__ == "__main__":
    main()
