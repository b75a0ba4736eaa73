"""Training throughput: debench's loop against a conventional PyTorch CIFAR loop, side by side.

The conventional loop is what most CIFAR code does: a torchvision-style dataset of PIL images,
CPU-side RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, a DataLoader,
float32, contiguous memory, ``loss.item()`` every step. debench's loop is the real
``debench.train.loop.train`` (device-resident data, on-device augmentation, channels_last, bf16
autocast on CUDA, fused optimizer, one host read per epoch). The two run alternately in one
process, ``--repeats`` times each; images/s of the last epoch of each repeat, medians and the
ratio are printed last.

fp32 is IEEE fp32 on every loop (``debench.train.runtime.apply_math_mode``), the conventional one
included, though torch's own default runs fp32 convolutions in TF32 on Ampere and later GPUs;
the ``tf32`` variants time that default. Each row records its ``fp32_math`` (``ieee``/``tf32``).

    python benchmarks/throughput.py --models resnet20 resnet56 --repeats 3
    python benchmarks/throughput.py --device cuda --variants fp32 bf16 bf16+compile
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from debench.data import load_cached, prepare_dataset  # noqa: E402
from debench.registry import create_model  # noqa: E402
from debench.train.loop import train  # noqa: E402
from debench.train.runtime import apply_math_mode  # noqa: E402

VARIANTS = {  # debench runtime settings per variant name
    "fp32": {"amp": "off", "compile": False},
    "bf16": {"amp": "bf16", "compile": False},
    "bf16+compile": {"amp": "bf16", "compile": True},
    "bf16+cudagraphs": {"amp": "bf16", "compile": "reduce-overhead"},
    "fp32+cudagraphs": {"amp": "off", "compile": "reduce-overhead"},
    "tf32": {"amp": "tf32", "compile": False},
    "tf32+cudagraphs": {"amp": "tf32", "compile": "reduce-overhead"},
    "default": {"amp": "auto", "compile": False},
}


def conventional_epoch(model_name: str, arrays: dict, meta: dict, device: torch.device, batch: int,
                       workers: int, epochs: int, lr: float = 0.1) -> tuple[float, float]:
    """Images/s of the last of ``epochs`` epochs of the conventional loop, and its test accuracy."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(meta["mean"], meta["std"])])

    class Cifar(Dataset):
        def __init__(self, x, y, transform):
            self.x, self.y, self.t = x, y, transform

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.t(Image.fromarray(self.x[i])), int(self.y[i])

    loader = DataLoader(Cifar(arrays["x_train"], arrays["y_train"], tf), batch_size=batch, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    test_tf = T.Compose([T.ToTensor(), T.Normalize(meta["mean"], meta["std"])])
    test = DataLoader(Cifar(arrays["x_test"], arrays["y_test"], test_tf), batch_size=batch,
                      num_workers=workers)
    torch.manual_seed(0)
    model = create_model(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    rate = 0.0
    for _ in range(epochs):
        model.train()
        seen, running = 0, 0.0
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            running += loss.item()
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - t0)
    model.eval()
    correct = n = 0
    with torch.no_grad():
        for x, y in test:
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
            n += len(y)
    return rate, 100.0 * correct / n


def debench_epoch(model_name: str, cache: Path, device: torch.device, batch: int, epochs: int,
                  n_train: int, variant: str, tmp: Path, threads: int, lr: float = 0.1) -> tuple[float, float]:
    steps = epochs * -(-n_train // batch)
    spec = {
        "experiment": "bench", "preset": "bench", "table": "discrete", "mode": "paper", "model": model_name,
        "dataset": "cifar10", "seed": 0,
        "protocol": {"iterations": steps, "batch_size": batch, "lr": lr, "weight_decay": 5e-4,
                     "eval_every": 10**6, "checkpoint_every": 10**6, "eval_batch_size": 1024,
                     "schedule": "constant"},
        "runtime": {"device": str(device), "threads": threads, "channels_last": True, **VARIANTS[variant]},
        "data": {"cache": str(cache)}, "tracking": {"enabled": False},
        "paths": {"metrics": str(tmp / f"{model_name}-{variant}" / "metrics.json"),
                  "checkpoints": str(tmp / f"ckpt-{time.time_ns()}")},
    }
    rec = train(spec)
    import csv

    rows = list(csv.DictReader(open(tmp / f"{model_name}-{variant}" / "epochs.csv")))
    return float(rows[-1]["images_per_s"]), rec["test_accuracy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet20"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last is timed")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-size", type=int, default=5000, help="synthetic train images (ignored with --npz)")
    ap.add_argument("--npz", default=None, help="folder of CIFAR-10 .npz shards (real data) instead of synthetic")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the conventional loop")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    tmp = Path(tempfile.mkdtemp(prefix="debench-bench-"))
    cache = tmp / "cifar10.npz"
    if a.npz:
        prepare_dataset("cifar10", "npz", cache, npz_dir=a.npz)
    else:
        prepare_dataset("cifar10", "synthetic", cache, train_size=a.train_size, test_size=1000)
    arrays, meta = load_cached(cache)
    n_train = len(arrays["y_train"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{a.threads} threads"
    print(f"device: {name}; torch {torch.__version__}; {n_train} train images; batch {a.batch}; "
          f"{a.epochs} epochs per measurement, last timed; conventional loop with {a.workers} workers", flush=True)
    results = []
    for model in a.models:
        rates: dict[str, list[float]] = {"conventional": [], **{v: [] for v in a.variants}}
        accs: dict[str, list[float]] = {k: [] for k in rates}
        for r in range(a.repeats):
            apply_math_mode({"train": "fp32"})  # IEEE, as debench's fp32 (train() sets its own)
            rate, acc = conventional_epoch(model, arrays, meta, device, a.batch, a.workers, a.epochs)
            rates["conventional"].append(rate)
            accs["conventional"].append(acc)
            print(f"  {model} repeat {r}: conventional {rate:8.0f} img/s", flush=True)
            for v in a.variants:
                rate, acc = debench_epoch(model, cache, device, a.batch, a.epochs, n_train, v, tmp, a.threads)
                rates[v].append(rate)
                accs[v].append(acc)
                print(f"  {model} repeat {r}: debench {v:13s} {rate:8.0f} img/s", flush=True)
        base = statistics.median(rates["conventional"])
        for k, vals in rates.items():
            results.append({"model": model, "loop": k, "median_img_s": statistics.median(vals), "runs": vals,
                            "fp32_math": "tf32" if k.startswith("tf32") and device.type == "cuda" else "ieee",
                            "ratio_vs_conventional": statistics.median(vals) / base,
                            "test_accuracy_median": statistics.median(accs[k]), "device": name})
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))
    print("\nmodel       loop              median img/s   ratio vs conventional   test acc (same budget)")
    for r in results:
        print(f"{r['model']:11s} {r['loop']:17s} {r['median_img_s']:12.0f}   {r['ratio_vs_conventional']:8.2f}x"
              f"               {r['test_accuracy_median']:6.2f}%")


if __name__ == "__main__":
    main()
