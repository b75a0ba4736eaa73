"""Keep the README's `debench plan` block equal to what the command prints for the survey config.

    python scripts/readme_plan.py           # exit 1 and a diff when the README block is stale
    python scripts/readme_plan.py --write   # rewrite the block in place

tests/test_plan.py runs the check, so a change to the config, the measurements or the plan's
format that leaves the README behind fails the tests.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START = "```\n$ debench plan\n"


def current() -> str:
    out = subprocess.run([sys.executable, "-m", "debench.cli", "plan", "--configfile", "config/config.yaml"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.rstrip("\n") + "\n"


def split(text: str) -> tuple[str, str, str]:
    i = text.index(START) + len(START)
    j = text.index("```\n", i)
    return text[:i], text[i:j], text[j:]


def main(argv: list[str]) -> int:
    text = README.read_text()
    head, block, tail = split(text)
    new = current()
    if block == new:
        return 0
    if "--write" in argv:
        README.write_text(head + new + tail)
        print(f"{README}: plan block rewritten")
        return 0
    sys.stdout.writelines(difflib.unified_diff(block.splitlines(True), new.splitlines(True), "README.md", "debench plan"))
    print("README.md's plan block is stale: python scripts/readme_plan.py --write", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
