"""Model artifacts (density plots, sample grids, sample paths) the runs wrote, as report plots.

They come from the run folders, never from ``runs.csv``; a report rebuilt from ``runs.csv`` alone
says so in place of the images.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import pandas as pd

from debench.report.layout import WIDTH_IN, empty_figure, wrap

_NO_ARTIFACTS = "model artifacts are not stored in runs.csv:\nrebuild from the run folders to see them"


def artifact_images(ok: pd.DataFrame, runs_dir: Path | None, table: str) -> list[tuple[str, Path]]:
    """``(title, png path)`` of every PNG artifact of the table's runs that exists on disk."""
    if runs_dir is None or ok.empty or "artifacts" not in ok or "table" not in ok:
        return []
    out = []
    for _, r in ok[(ok["table"] == table) & ok["artifacts"].notna()].iterrows():
        for rel in json.loads(r["artifacts"]) if str(r["artifacts"]).startswith("[") else []:
            p = runs_dir / str(r["run_dir"]) / rel
            if p.suffix == ".png" and p.is_file():
                out.append((f"{r['model']} / {r['dataset']} / seed {r['seed']}: {p.stem}", p))
    return sorted(out, key=lambda t: (t[0].split(" / seed ")[1], t[0]))


def _tiles(ok, runs_dir, table: str, what: str, limit: int = 12):
    images = artifact_images(ok, runs_dir, table)[:limit]
    if not images:
        why = _NO_ARTIFACTS if runs_dir is None and not ok.empty else f"no {what} (no runs of this family)"
        return empty_figure(why)
    cols = min(2, len(images))
    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN, 2.9 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, path) in zip(axes.flat, images):
        ax.imshow(mpimg.imread(path))
        ax.set_title(wrap(title), fontsize=7)
    return fig


def flow_samples(ok, runs_dir):
    return _tiles(ok, runs_dir, "flows", "density plots")


def latent_sde_paths(ok, runs_dir):
    return _tiles(ok, runs_dir, "latent_sde", "sample paths")


def generative_samples(ok, runs_dir):
    return _tiles(ok, runs_dir, "generative", "samples")
