"""Absolute locations of the repository's folders.

Notebooks run with papermill from whatever directory the caller is in, so nothing in
lpulab uses relative paths: everything is resolved from here.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root (the folder holding pyproject.toml, data/ and notebooks/).
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
HARDWARE = DATA / "hardware"
MODELS = DATA / "models"
PRICES = DATA / "prices"
MEASUREMENTS = DATA / "measurements"
CLAIMS = DATA / "claims.toml"
NOTEBOOKS = ROOT / "notebooks"
PARAMS = NOTEBOOKS / "params"
CITATION = ROOT / "CITATION.cff"


#: The environment variable naming user data folders (``os.pathsep``-separated), each
#: shaped like ``data/``: ``hardware/``, ``models/``, ``prices/``, ``measurements/``.
DATA_ENV = "LPULAB_DATA"


def user_data_dirs() -> list[Path]:
    """The user data folders named in ``$LPULAB_DATA``, in order (first wins), resolved."""
    raw = os.environ.get(DATA_ENV, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def data_dirs() -> list[Path]:
    """Where catalog entries are looked up: the user data folders, then the shipped ``data/``."""
    return [*user_data_dirs(), DATA]


def reports_dir() -> Path:
    """Where reports are written: ``$LPULAB_REPORTS`` if set, else ``<root>/reports``."""
    return Path(os.environ.get("LPULAB_REPORTS", ROOT / "reports")).resolve()


def notebook(stem_or_path: str | os.PathLike) -> Path:
    """Resolve ``"01_bandwidth"``, ``"01_bandwidth.ipynb"`` or a path to a notebook file."""
    p = Path(stem_or_path)
    if p.suffix != ".ipynb":
        p = p.with_suffix(".ipynb")
    candidates = [p] if p.is_absolute() else [Path.cwd() / p, NOTEBOOKS / p.name]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    known = sorted(q.stem for q in NOTEBOOKS.glob("*.ipynb"))
    raise FileNotFoundError(f"no notebook {str(stem_or_path)!r}; known notebooks: {', '.join(known)}")
