"""Evaluation of a trained model on the test (and validation) split, and per-step counters."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
import torch.nn.functional as F

from debench.data import DeviceData
from debench.train.protocol import Protocol


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: DeviceData, p: Protocol, classify: bool,
             autocast: Callable[[], Any], stats_hook: Callable | None) -> dict[str, float]:
    """Test (and validation) metrics of ``model``.

    Args:
        model: the model (EMA average where the protocol keeps one); put in eval mode.
        data: the run's device data.
        p: the protocol (``eval_batch_size``).
        classify: classification (loss and accuracy per split) or the model's ``evaluate_metrics``.
        autocast: context factory of the run's eval precision.
        stats_hook: the model's ``debench_stats`` (counters prefixed ``eval_``), or None.

    Returns:
        ``test_loss``, ``test_accuracy`` (and ``val_*``, ``eval_*``), or the model's metrics.
    """
    model.eval()
    if stats_hook:
        stats_hook()
    out: dict[str, float] = {}
    if not classify:
        with torch.enable_grad() if getattr(model, "eval_needs_grad", False) else contextlib.nullcontext():
            out.update({f"test_{k}" if k in ("loss",) else k: float(v) for k, v in
                        model.evaluate_metrics(data.to_model_input(data.x_test), data.y_test,
                                               p.eval_batch_size).items()})
        return out
    for split in ["test"] + (["val"] if data.y_val is not None else []):
        loss_sum = torch.zeros((), device=data.device)
        correct = torch.zeros((), device=data.device, dtype=torch.long)
        n, stats = 0, {}
        for x, y in data.eval_batches(split, p.eval_batch_size):
            with autocast():
                logits = model(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
            if stats_hook:
                accumulate(stats, stats_hook())
        out[f"{split}_loss"] = loss_sum.item() / n
        out[f"{split}_accuracy"] = 100.0 * correct.item() / n
        if split == "test":
            out.update({f"eval_{k}": v / max(stats.get("_n", 1), 1) for k, v in stats.items() if k != "_n"})
    return out


def accumulate(acc: dict[str, float], stats: dict[str, float]) -> None:
    """Add one call's counters to ``acc`` (``acc["_n"]`` counts the calls)."""
    acc["_n"] = acc.get("_n", 0) + 1
    for k, v in stats.items():
        acc[k] = acc.get(k, 0.0) + float(v)
