"""Move the CIFAR-10 shards to a device machine in parts that fit one call, and put them back together.

The device tool carries at most 64 MiB of ignored files per call; a warm machine keeps them
between calls. ``split`` (here) cuts every shard named in ``SHA256SUMS`` into pieces and packs
the pieces into folders ``<out>/part1``, ``part2``, ... of at most ``--max-mib`` each (the
checksum list travels in ``part1``); each folder is carried by one call. ``join`` (there)
concatenates the pieces back into ``<dest>/cifar10/*.npz`` and checks every sha256 against the
list before anything reads them.

Usage:
    python benchmarks/devdata.py split --src /work/shared/data --out .devdata/cifar10-parts
    python benchmarks/devdata.py join --parts .devdata/cifar10-parts --dest .devdata/npz
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

DATASET = "cifar10"
SUMS = "SHA256SUMS"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _listed(sums: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of the dataset's files in a ``sha256sum`` list."""
    out = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if name.startswith(f"{DATASET}/"):
            out[name] = digest
    if not out:
        raise SystemExit(f"{sums}: lists no {DATASET}/ file")
    return out


def split(src: Path, out: Path, max_mib: float) -> list[Path]:
    """Cut the shards into pieces and pack them into carry folders; return the folders.

    Raises:
        SystemExit: naming the file, when a shard is missing or its sha256 is not the listed one.
    """
    limit = int(max_mib * 2**20)
    listed = _listed(src / SUMS)
    pieces: list[tuple[str, bytes]] = []
    for name, digest in sorted(listed.items()):
        data = (src / name).read_bytes() if (src / name).is_file() else None
        if data is None:
            raise SystemExit(f"{src / name}: missing (listed in {src / SUMS})")
        if hashlib.sha256(data).hexdigest() != digest:
            raise SystemExit(f"{src / name}: sha256 differs from {src / SUMS}")
        step = max(limit // 2, 1)  # at most half a folder per piece, so folders fill up
        pieces += [(f"{Path(name).name}.{i // step:03d}", data[i:i + step]) for i in range(0, len(data), step)]
    folders: list[list[tuple[str, bytes]]] = [[]]
    for piece in pieces:
        if folders[-1] and sum(len(b) for _, b in folders[-1]) + len(piece[1]) > limit:
            folders.append([])
        folders[-1].append(piece)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, folder in enumerate(folders, 1):
        part = out / f"part{i}"
        part.mkdir(exist_ok=True)
        for old in part.iterdir():
            old.unlink()
        for fname, blob in folder:
            (part / fname).write_bytes(blob)
        paths.append(part)
    (out / "part1" / SUMS).write_text("".join(f"{d}  {n}\n" for n, d in sorted(listed.items())))
    return paths


def join(parts: Path, dest: Path) -> list[Path]:
    """Reassemble every listed shard under ``dest/cifar10`` and verify it.

    Raises:
        SystemExit: naming the shard, when pieces are missing or the sha256 differs.
    """
    listed = _listed(parts / "part1" / SUMS)
    (dest / DATASET).mkdir(parents=True, exist_ok=True)
    done = []
    for name, digest in sorted(listed.items()):
        base = Path(name).name
        found = sorted(parts.glob(f"part*/{base}.[0-9][0-9][0-9]"), key=lambda p: p.suffix)
        if not found:
            raise SystemExit(f"{name}: no pieces under {parts}/part*/ (was every part carried?)")
        target = dest / name
        with open(target, "wb") as f:
            for piece in found:
                f.write(piece.read_bytes())
        if _sha256(target) != digest:
            target.unlink()
            raise SystemExit(f"{name}: sha256 of the reassembled shard differs from {SUMS} "
                             f"({len(found)} piece(s) found; a part missing or cut short?)")
        done.append(target)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split")
    s.add_argument("--src", type=Path, required=True, help="folder with SHA256SUMS and cifar10/*.npz")
    s.add_argument("--out", type=Path, default=Path(".devdata/cifar10-parts"))
    s.add_argument("--max-mib", type=float, default=60.0, help="size of one carry folder")
    j = sub.add_parser("join")
    j.add_argument("--parts", type=Path, default=Path(".devdata/cifar10-parts"))
    j.add_argument("--dest", type=Path, default=Path(".devdata/npz"))
    a = p.parse_args(argv)
    if a.cmd == "split":
        for folder in split(a.src, a.out, a.max_mib):
            size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
            print(f"{folder}  {size:.1f} MiB  (carry it in one call)")
    else:
        for shard in join(a.parts, a.dest):
            print(f"{shard}  sha256 ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
