"""imagefolder load time and peak memory: first load (decode + write the cache) vs second (cache).

Builds a class-per-folder tree of 32x32 RGB PNGs (the seeded synthetic data, 50k train + 10k test
by default) in a temp folder, then loads it in fresh processes: the first load decodes every
image into one preallocated uint8 array and writes the cache, the second reads the cache. Each
process reports its wall time and peak RSS (``ru_maxrss``), and the RSS after importing alone
(Linux: ``VmHWM``).
``--reference PATH`` also times a checkout whose loader keeps a list of open PIL images (e.g.
the main branch before this change), on the same tree, with its own (cold) first load.

    python benchmarks/imagefolder_load.py [--n-train 50000 --n-test 10000] [--reference /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def build_tree(root: Path, n_train: int, n_test: int) -> float:
    import numpy as np
    from PIL import Image

    from unlearnbench.core.data import make_synthetic

    t0 = time.perf_counter()
    raw = make_synthetic(n_train=n_train, n_test=n_test, size=32, num_classes=10, seed=0)
    for split, data in (("train", raw.train), ("test", raw.test)):
        x = data.x.permute(0, 2, 3, 1).numpy()
        y = data.y.numpy()
        for c in range(10):
            (root / split / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(len(y)):
            Image.fromarray(np.ascontiguousarray(x[i])).save(root / split / f"class{y[i]}" / f"{i:06d}.png")
    return time.perf_counter() - t0


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: on Linux ru_maxrss carries the parent's peak across fork + exec.
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def child(root: str) -> None:
    """One load in this process: seconds, RSS after imports, peak RSS (MB)."""
    from unlearnbench.core.data import DataSource, load_dataset

    base = _peak_rss_mb()
    t0 = time.perf_counter()
    raw = load_dataset("imagefolder", DataSource(Path(root)))
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mb()
    pixels = (raw.train.x.numel() + raw.test.x.numel()) / 1e6
    print(json.dumps({"seconds": seconds, "import_rss_mb": base, "peak_rss_mb": peak, "pixels_mb": pixels,
                      "n": len(raw.train) + len(raw.test)}))


def run_child(root: Path, cache: Path, pythonpath: str) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath, "UNLEARNBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(HERE), "--child", str(root)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--reference", default=None, help="A checkout (PYTHONPATH) with the loader to compare against.")
    ap.add_argument("--tree", default=None, help="Reuse (or build into) this folder instead of a temp one.")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    own = str(HERE.parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.tree) if args.tree else Path(tmp) / "tree"
        if not (root / "train").is_dir():
            print(f"building {args.n_train + args.n_test:,} PNGs in {root} ...", flush=True)
            print(f"  built in {build_tree(root, args.n_train, args.n_test):.1f} s", flush=True)
        cache = Path(tmp) / "cache"
        rows = [("this loader, first load (decode + write cache)", run_child(root, cache, own)),
                ("this loader, second load (cache)", run_child(root, cache, own))]
        if args.reference:
            rows.append((f"reference loader ({args.reference})", run_child(root, Path(tmp) / "ref-cache", args.reference)))
    print("| load | images | seconds | peak RSS MB | RSS after imports MB | pixels MB |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} | {r['import_rss_mb']:,.0f} "
              f"| {r['pixels_mb']:.0f} |")


if __name__ == "__main__":
    main()
