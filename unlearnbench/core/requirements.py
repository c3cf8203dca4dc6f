"""Optional and specially installed packages: is it importable, and the exact line that installs it.

A pip user who lacks one must be refused before any work, with the line to run — not after a
minute of training (issue 21). ``find_spec`` answers without importing the package.
"""

from __future__ import annotations

import importlib.util

from unlearnbench.core.errors import UserError

# import name -> (what it is for, the exact install line)
INSTALL = {
    # torchattacks 3.5.1 pins requests~=2.25.1 (never imported), which would downgrade MLflow and
    # numpy: it is installed without its dependencies (the ones it imports are ours already).
    "torchattacks": ("every attack and robustness metric", "pip install --no-deps torchattacks==3.5.1"),
    "pyautoattack": ("the AutoAttack parity checks", "pip install --no-deps pyautoattack==0.2.0"),
    "ray": ("--executor ray", "pip install 'unlearnbench[ray]'"),
    "psutil": ("--system-metrics", "pip install 'unlearnbench[system-metrics]'"),
    "timm": ("timm:NAME models", "pip install timm"),
    "safetensors": (".safetensors weights", "pip install safetensors"),
}


class MissingDependency(UserError, ImportError):
    """A package a requested feature needs is not installed; the message holds the install line."""


def available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return False


def install_line(module: str) -> str:
    return INSTALL.get(module, ("", f"pip install {module}"))[1]


def require(module: str, purpose: str) -> None:
    """Raise ``MissingDependency`` (one sentence with the install line) unless ``module`` imports."""
    if not available(module):
        raise MissingDependency(f"{purpose} needs {module}, which is not installed; install it with: "
                                f"{install_line(module)}")
