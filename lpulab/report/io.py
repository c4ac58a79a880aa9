"""Files appear whole or not at all: write to a temporary name, then rename.

Report folders are built under a hidden name in ``reports/`` and moved into place whole:
``.tmp-<id>-<pid>-<ns>`` while a run builds it. Moving a finished folder over an older one
swaps the two in one step where the system allows it (Linux ``renameat2`` with
``RENAME_EXCHANGE``), so the older report stays reachable until the new one is in place;
elsewhere the older one is first renamed to ``.old-<id>-<pid>``. A run killed at any point
leaves at most such hidden folders, which :func:`recover` (called before every run) puts
back or removes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def tmp_name(report_id: str) -> str:
    """The hidden name a run builds its report under (its process id lets :func:`recover`
    tell a live run's folder from a killed one's)."""
    return f".tmp-{report_id}-{os.getpid()}-{time.time_ns()}"


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None       # libc's renameat2; False where there is none


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2). False where that is not available."""
    global _renameat2
    if _renameat2 is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _renameat2 = libc.renameat2
            _renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        except (OSError, AttributeError):
            _renameat2 = False
    if not _renameat2:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(src: Path, dst: Path, *, exchange: bool = True) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing an older ``dst`` whole.

    With ``exchange`` (and a system that has it) the two are swapped in one step, so ``dst``
    always holds a whole report. Otherwise the older one is renamed to ``.old-<name>-<pid>``
    first; if the process dies between the two renames, :func:`recover` puts it back."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and exchange and _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the older report
        return
    old = None
    if dst.exists():
        old = dst.with_name(f".old-{dst.name}-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_HIDDEN = (re.compile(r"^\.(?P<kind>tmp)-(?P<id>.+)-(?P<pid>\d+)-\d{10,}$"),
           re.compile(r"^\.(?P<kind>old)-(?P<id>.+)-(?P<pid>\d+)$"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def recover(reports: Path) -> list[str]:
    """Clean up after runs that were killed: a ``.old-<id>-<pid>`` folder whose ``<id>`` is
    missing is put back (the previous good report); other leftovers of processes that no
    longer run are removed. A live run's folders are left alone. Returns what was done."""
    reports = Path(reports)
    done: list[str] = []
    try:
        entries = list(reports.iterdir())
    except OSError:
        return done
    for d in entries:
        m = _HIDDEN[0].match(d.name) or _HIDDEN[1].match(d.name)
        if not m or not d.is_dir() or _alive(int(m.group("pid"))):
            continue
        target = reports / m.group("id")
        try:
            if m.group("kind") == "old" and not target.exists():
                os.replace(d, target)
                done.append(f"restored {target.name} (a run was killed while replacing it)")
            else:
                shutil.rmtree(d)
                done.append(f"removed {d.name} (left by a run that was killed)")
        except OSError:
            continue
    return done


def read_status(report_dir: Path) -> dict | None:
    """A report folder's ``status.json`` as a dict, or None where it is missing, unreadable or
    not a JSON object."""
    try:
        st = json.loads((Path(report_dir) / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return st if isinstance(st, dict) else None
