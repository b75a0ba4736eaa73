"""The ``debench`` command line's own output: ``--help`` and ``debench models`` (issue 28.7)."""

from __future__ import annotations

import argparse

import pytest

from debench.cli import build_parser, main, table


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_help_lists_every_subcommand_with_its_help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # the help wraps to the terminal
    with pytest.raises(SystemExit) as end:
        main(["--help"])
    assert end.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: debench [-h] COMMAND ...\n")
    names = subcommands(build_parser())
    assert {"regenerate", "merge-runs", "plan", "calibrate", "status", "train"} <= set(names)  # left out before
    listed = [ln.split()[0] for ln in text.splitlines() if ln.startswith("  ") and not ln.startswith("   ")]
    assert [n for n in listed if n in names] == list(names)  # each once, in the parser's order
    width = max(map(len, names))
    for line in text.splitlines():
        if line.startswith("  regenerate "):
            assert line == f"  {'regenerate':<{width}}  rebuild tables, plots and the HTML report from a runs.csv (no"


def test_a_subcommands_usage_names_only_itself(capsys):
    with pytest.raises(SystemExit):
        main(["status", "--help"])
    assert capsys.readouterr().out.startswith("usage: debench status [-h]")


def test_table_sizes_columns_from_their_content():
    lines = table(("model", "family", "paper"), [("a_very_long_model_name", "x", "P1"), ("m", "stochastic", "P2")])
    assert lines == ["model                   family      paper",
                     "a_very_long_model_name  x           P1",
                     "m                       stochastic  P2"]
    assert table(("a", "b"), []) == ["a  b"]


def test_models_prints_a_header_and_aligned_columns(capsys):
    assert main(["models", "resnet*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    assert header.split() == ["model", "family", "task", "scheme", "paper"]
    starts = [header.index(c) for c in ("family", "task", "scheme", "paper")]
    rows = lines[1:]
    assert len(rows) > 3 and all(r.startswith("resnet") for r in rows)
    # the first column is as wide as the longest name (not a fixed 28), two spaces to the next
    assert starts[0] == max(len(r.split()[0]) for r in rows) + 2
    for row in rows:
        for s in starts:
            assert row[s - 2:s] == "  " and row[s] != " ", (row, s)
        assert row == row.rstrip()


def test_models_matching_nothing_is_a_one_line_error(capsys):
    assert main(["models", "no_such_model*"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err == "debench models: no registered model matches 'no_such_model*'\n"


def test_output_into_a_closed_pipe_ends_quietly_with_the_sigpipe_status():
    # `debench status ... | head -1`: the reader leaves first. Before, a BrokenPipeError traceback
    # was printed (from the print, or "Exception ignored" from the interpreter's final flush).
    import os
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)  # every write to the pipe now fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-c", "from debench.cli import run; run()", "models"],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
