"""Checkpoints that make a killed run resumable, bit-exactly on the CPU.

A checkpoint holds model, optimizer, RNG states, the epoch rows so far, the MLflow run id and
the config hash. It is written atomically and loaded with ``weights_only=True``; a checkpoint
that fails to load is reported and the previous one is used. The last ``keep`` are kept.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any

import torch

from debench.track.atomic import atomic_write_bytes

log = logging.getLogger("debench.train")
_NAME = re.compile(r"^ckpt-epoch(\d+)\.pt$")


def _epochs(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt-epoch*.pt") if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(folder: Path, epoch: int, state: dict[str, Any], keep: int = 2) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    path = folder / f"ckpt-epoch{epoch:05d}.pt"
    atomic_write_bytes(path, buf.getvalue())
    for _, old in _epochs(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: Path, config_hash: str) -> dict[str, Any] | None:
    """Newest loadable checkpoint of this configuration, or None to start fresh.

    Raises:
        RuntimeError: if a checkpoint belongs to a different configuration (a resumed run must
            not silently change its hyperparameters).
    """
    if not folder.exists():
        return None
    for epoch, path in reversed(_epochs(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            log.warning("checkpoint %s cannot be loaded (%s); trying the previous one", path, _reason(exc))
            continue
        if state.get("config_hash") != config_hash:
            raise RuntimeError(
                f"checkpoint {path} was written by a run with config hash {state.get('config_hash')}, "
                f"this run has {config_hash}; delete {folder} to start over with the new settings"
            )
        return state
    return None


def _reason(exc: Exception) -> str:
    """Why a checkpoint did not load, in one line, without torch's advice (file an issue, load it
    with ``weights_only=False``): neither applies to a truncated or foreign file."""
    text = str(exc)
    refused = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", text, re.S)
    if refused:
        return f"refused by the weights-only unpickler: {' '.join(refused.group(1).split())[:200]}"
    first = text.strip().split(". ")[0].splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def rng_state() -> dict[str, Any]:
    import random

    # Python's generator drives the coins of stochastic depth; stored as plain ints/tuples.
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    # numpy's global generator: torchsde's Brownian motions draw their entropy from it
    name, keys, pos, has_gauss, cached = __import__("numpy").random.get_state()
    state["numpy"] = [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
