"""Unlearning a checkpoint: ``check_unlearn`` checks everything that needs no data and returns the
request ``run_unlearn`` takes, so a command fails before its expensive work and parses its forget
spec once; ``unlearn_checkpoint`` does both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check_unlearn(checkpoint: Any, method: str, forget: Any, *, config: Mapping[str, Any] | None = None,
                  prune: float | None = None, adv_retain: str | None = None, seed: int = 0,
                  dataset: str | None = None, preset: str | None = None) -> Any:
    """Check an unlearning request without reading data; returns the ``UnlearnRequest`` (checkpoint,
    built method config, parsed forget spec) that :func:`run_unlearn` takes. ``checkpoint`` is a
    path or a loaded ``Checkpoint``; ``forget`` a spec text or a parsed ``ForgetSpec``."""
    from unlearnbench.core.checkpoint import Checkpoint, load_checkpoint
    from unlearnbench.unlearn.jobs import check_request

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    return check_request(ckpt, method, forget, config=dict(config or {}), prune=prune, adv_retain=adv_retain,
                         seed=seed, dataset=dataset, preset=preset)


def run_unlearn(request: Any, *, device: str = "auto", source: Any = None, reference: Any = None,
                allow_data_mismatch: bool = False, allow_reference_mismatch: bool = False,
                record_epochs: bool = False) -> Any:
    """Run a checked request: the data loaded and split once, checked against the checkpoint (and
    the ``reference`` checkpoint), the method run. Returns the ``UnlearnOutcome`` (model, metadata of
    the checkpoint to write, the data, the original); nothing is written."""
    from unlearnbench.unlearn.jobs import run_request

    return run_request(request, device=device, source=source, reference=reference,
                       allow_data_mismatch=allow_data_mismatch, allow_reference_mismatch=allow_reference_mismatch,
                       record_epochs=record_epochs)


def unlearn_checkpoint(checkpoint: Any, method: str, forget: Any, *, config: Mapping[str, Any] | None = None,
                       prune: float | None = None, adv_retain: str | None = None, seed: int = 0,
                       device: str = "auto", source: Any = None, reference: Any = None, **allow: bool) -> Any:
    """:func:`check_unlearn` then :func:`run_unlearn` in one call."""
    request = check_unlearn(checkpoint, method, forget, config=config, prune=prune, adv_retain=adv_retain, seed=seed)
    return run_unlearn(request, device=device, source=source, reference=reference, **allow)

