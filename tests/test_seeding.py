"""A run is a function of its seed: no global generator left unseeded (issue 24's side-by-side test
found latent_sde differing between two processes: torchsde draws its Brownian entropy from numpy)."""

from __future__ import annotations

import numpy as np

from debench.data import prepare_dataset
from debench.train.loop import train
from tests.conftest import make_spec


def test_latent_sde_run_does_not_depend_on_numpy_global_state(tmp_path, one_thread):
    cache = tmp_path / "ou_paths.npz"
    prepare_dataset("ou_paths", "synthetic", cache, train_size=8, test_size=4, seed=0)
    records = []
    for i, outside in enumerate((123, 456)):
        np.random.seed(outside)  # what the process did before the run: must not matter
        spec = make_spec(tmp_path / f"r{i}", cache, model="latent_sde", dataset="ou_paths", table="stochastic",
                         model_args={"latent_size": 2, "context_size": 4, "hidden_size": 8},
                         protocol={"batch_size": 4, "epochs": 1, "lr": 0.01, "optimizer": "adam",
                                   "weight_decay": 0.0, "crop_padding": 0, "flip": False, "eval_batch_size": 4})
        records.append(train(spec))
    a, b = records
    assert a["status"] == b["status"] == "ok"
    keys = [k for k in a if k.startswith(("test_", "train_", "final_")) and isinstance(a[k], float)
            and not k.endswith("_time_s")]
    assert keys, sorted(a)
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
