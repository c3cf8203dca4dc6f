"""Make a wheel's declared dependencies, and nothing else, importable in a fresh venv without
downloading them: resolve the wheel's Requires-Dist (markers evaluated, extras followed)
transitively against an existing environment, and symlink each resolved distribution's files
(packages, .dist-info, .libs) into one folder that a .pth file puts on the fresh venv's path.

A dependency the wheel forgot to declare is then missing in the fresh venv, exactly as after a
real `pip install`; `pip check` there verifies the versions. torch (5 GB) is linked, not copied.

    python .ci/expose_deps.py WHEEL TARGET_DIR [--also DIST ...]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    return meta.get_all("Requires-Dist") or []


def resolve(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions satisfying ``requirements`` and theirs, by canonical name."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    found: dict[str, metadata.Distribution] = {}
    todo = [(Requirement(r), frozenset()) for r in requirements]
    seen: set[tuple[str, frozenset]] = set()
    while todo:
        req, extras = todo.pop()
        env_ok = req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or {""}))
        if not env_ok:
            continue
        key = canonicalize_name(req.name)
        if (key, frozenset(req.extras)) in seen:
            continue
        seen.add((key, frozenset(req.extras)))
        dist = installed.get(key)
        if dist is None:
            sys.exit(f"{req} is required but not installed in {sys.prefix}")
        found[key] = dist
        todo.extend((Requirement(r), frozenset(req.extras)) for r in (dist.requires or []))
    return found


def link(dist: metadata.Distribution, target: Path) -> int:
    base = Path(dist.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    n = 0
    for top in sorted(tops):
        src, dst = base / top, target / top
        if src.exists() and not dst.exists() and top != "__pycache__":
            dst.symlink_to(src)
            n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("wheel", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--also", nargs="*", default=[], help="extra distributions (e.g. torchattacks)")
    args = parser.parse_args()
    args.target.mkdir(parents=True, exist_ok=True)
    dists = resolve(wheel_requirements(args.wheel) + args.also)
    links = sum(link(d, args.target) for d in dists.values())
    print(f"exposed {len(dists)} distributions ({links} links) in {args.target}")


if __name__ == "__main__":
    main()
