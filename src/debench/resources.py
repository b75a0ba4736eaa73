"""Files debench reads at run time, found in an editable install and in a wheel alike.

``src/debench/_data/schemas`` and ``src/debench/_data/reference`` are symbolic links to
``workflow/schemas`` (the config and run-record schemas Snakemake also validates against) and
``config/reference`` (the published numbers): one copy in the repository, every file of each
folder shipped as package data (``pyproject.toml``, ``[tool.setuptools.package-data]``), where
the wheel build copies the linked files' contents.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


PACKAGE_DATA = Path(str(resources.files("debench"))) / "_data"


def data_path(relative: str) -> Path:
    """The path of a packaged data file, ``relative`` to ``debench/_data`` (``schemas/config.schema.yaml``).

    Raises:
        FileNotFoundError: naming the file and where it was looked for (a broken install).
    """
    path = PACKAGE_DATA / relative
    if not path.is_file():
        raise FileNotFoundError(f"debench's packaged file {relative} is missing: looked for {path} "
                                "(reinstall debench; in a checkout, src/debench/_data links to workflow/ and config/)")
    return path
