"""What oversubscription costs: ``unlearnbench train`` beside a busy process, default threads vs
pinned, side by side.

A CPU training step splits each kernel across the intra-op threads and waits for the slowest.
When another process keeps one of the CPUs busy, a thread that shares that CPU runs at half
speed (or waits a scheduler slice) and every step waits for it. This script runs, in fresh
processes and interleaved rounds, the same small `train` with the default thread count (the
usable CPUs), with ``--threads 1``, each alone and beside a busy process (a Python loop), and
prints the median wall times and the ratios.

    python benchmarks/threads_oversubscription.py                 # 3 rounds, 3 epochs on digits
    python benchmarks/threads_oversubscription.py --rounds 5 --epochs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_train(epochs: int, threads: int | None, out: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "unlearnbench", "train", "--epochs", str(epochs), "--no-track", "--quiet",
           "--device", "cpu", "--out", str(out), *(["--threads", str(threads)] if threads else [])]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=out.parent)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from unlearnbench.core.cpus import describe, usable_cpus

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cases = {"default, alone": (None, False), "--threads 1, alone": (1, False),
             "default, beside a busy process": (None, True), "--threads 1, beside a busy process": (1, True)}
    times: dict[str, list[float]] = {k: [] for k in cases}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.pt"
        run_train(1, 1, out, env)  # warm caches, untimed
        for _ in range(args.rounds):
            for name, (threads, busy) in cases.items():
                burner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                try:
                    times[name].append(run_train(args.epochs, threads, out, env))
                finally:
                    if burner is not None:
                        burner.kill()
                        burner.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"train cnn on digits, {args.epochs} epochs; {describe()}; default = {usable_cpus()} thread(s); "
          f"n = {args.rounds} rounds, median wall s (min-max)")
    for name, values in times.items():
        print(f"  {name:38s} {med[name]:7.2f}  ({min(values):.2f}-{max(values):.2f})")
    print(f"beside a busy process: default / --threads 1 = {med['default, beside a busy process'] / med['--threads 1, beside a busy process']:.2f}x;"
          f" alone: {med['default, alone'] / med['--threads 1, alone']:.2f}x; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
