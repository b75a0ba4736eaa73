"""What a run shows while it trains: the epoch CSV (rewritten atomically) and the progress line."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

from debench.track.atomic import atomic_write_text


class EpochLog:
    """Per-epoch rows, rewritten atomically as CSV after every epoch.

    Args:
        path: the CSV file.
        rows: rows restored from a checkpoint.
    """

    def __init__(self, path: Path, rows: list[dict[str, Any]] | None = None):
        self.path, self.rows = path, list(rows or [])

    def append(self, row: dict[str, Any]) -> None:
        """Add ``row`` and rewrite the file (a new key becomes a new column)."""
        self.rows.append(row)
        keys: list[str] = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())


class Progress:
    """A tqdm bar on a terminal; one line per epoch (and every 30 s) in a log file."""

    def __init__(self, spec: dict, n_epochs: int, steps_per_epoch: int):
        self.name = f"{spec['model']}/{spec['dataset']}/seed{spec['seed']}"
        self.n_epochs, self.tty = n_epochs, sys.stderr.isatty()
        self.bar, self.last_print = None, time.time()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=n_epochs * steps_per_epoch, desc=self.name, unit="step", leave=False)

    def step(self, epoch: int, step: int) -> None:
        """After optimizer step ``step`` of epoch ``epoch`` (0-based)."""
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh() if step % 10 == 0 else None
        elif time.time() - self.last_print > 30:
            print(f"[{self.name}] epoch {epoch + 1}/{self.n_epochs} step {step}", file=sys.stderr, flush=True)
            self.last_print = time.time()

    def epoch_done(self, row: dict) -> None:
        """One line with the epoch's loss, accuracies and throughput."""
        parts = [f"epoch {row['epoch']}/{self.n_epochs}", f"loss {row['train_loss']:.4f}"]
        if "train_accuracy" in row:
            parts.append(f"train acc {row['train_accuracy']:.2f}%")
        if "test_accuracy" in row:
            parts.append(f"test acc {row['test_accuracy']:.2f}%")
        parts.append(f"{row['images_per_s']:.0f} img/s")
        msg = f"[{self.name}] " + ", ".join(parts)
        if self.bar is not None:
            self.bar.write(msg)
        else:
            print(msg, file=sys.stderr, flush=True)
        self.last_print = time.time()

    def close(self) -> None:
        """Remove the bar."""
        if self.bar is not None:
            self.bar.close()
