"""Many runs at once: worker processes that stop cleanly on Ctrl-C, with a progress bar each.

:func:`parallel` runs ``fn(task)`` for each task in up to ``workers`` processes and yields
``(task, result)`` as they finish; a worker that dies yields the exception as its result.
On Ctrl-C (SIGINT, from the terminal or sent to this process) the tasks not started are
dropped, the running ones are interrupted (each removes its temporary folder and shuts its
kernel down), and KeyboardInterrupt is raised here once they have stopped. Idle workers
ignore the signal, so nothing is interrupted twice.

With ``progress``, each running task gets a progress bar of its own line (``position``):
``fn`` receives ``task["progress"]`` as tqdm options for papermill's bar.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

_ACTIVE = False
_INTERRUPTED = False
_SLOTS = None


def _on_sigint(signum, frame):
    global _INTERRUPTED
    if _ACTIVE and not _INTERRUPTED:
        _INTERRUPTED = True
        raise KeyboardInterrupt


def _init(lock, slots):
    global _SLOTS
    signal.signal(signal.SIGINT, _on_sigint)
    _SLOTS = slots
    if lock is not None:
        from tqdm import tqdm

        tqdm.set_lock(lock)


def _call(fn, task: dict, progress: bool):
    global _ACTIVE
    if _INTERRUPTED:
        raise KeyboardInterrupt
    slot = _SLOTS.get() if (progress and _SLOTS is not None) else None
    task = dict(task)
    if slot is not None:
        task["progress"] = {"position": slot, "leave": False, "desc": task.get("desc", "run")[:24].ljust(24),
                            "dynamic_ncols": True}
    _ACTIVE = True
    try:
        return fn(task)
    finally:
        _ACTIVE = False
        if slot is not None:
            _SLOTS.put(slot)  # type: ignore[union-attr]  # a slot comes from _SLOTS


def context():
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def parallel(fn, tasks: list[dict], workers: int, *, progress: bool = False):
    """Yield ``(task, result)`` as tasks finish (``result`` is the exception of a task whose
    worker failed). ``fn`` must be importable by the worker processes (a module-level function)."""
    ctx = context()
    workers = max(1, min(workers, len(tasks)))
    lock = slots = None
    if progress:
        from tqdm import tqdm

        lock = ctx.RLock()
        tqdm.set_lock(lock)
        slots = ctx.Queue()
        for i in range(workers):
            slots.put(i)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init, initargs=(lock, slots))
    futures = {}
    try:
        futures = {pool.submit(_call, fn, t, progress): t for t in tasks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    yield futures[fut], fut.result()
                except Exception as exc:  # a worker process that died (BrokenProcessPool) or raised
                    yield futures[fut], exc
    except BaseException:
        for fut in futures:
            fut.cancel()
        for proc in list(getattr(pool, "_processes", {}).values()):  # stop the running ones
            with contextlib.suppress(ProcessLookupError, OSError):
                os.kill(proc.pid, signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def run_one(task: dict):
    """Run one notebook as ``task`` says (a worker's function): a RunResult."""
    from .runner import run_notebook

    return run_notebook(task["notebook"], planned=task["plan"], reports=task["reports"], timeout=task["timeout"],
                        progress=task.get("progress", False), build_index=False,
                        skip_completed=task.get("skip_completed", False))
