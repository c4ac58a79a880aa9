"""A kernel killed by Ctrl-C leaves a kernel-client task whose DeadKernelError asyncio logs as
"Task exception was never retrieved" with a traceback; the runner drops that record (the run
reports the dead kernel itself) and keeps every other asyncio record."""

import logging
import sys

import pytest
from nbclient.exceptions import DeadKernelError

from lpulab.report import runner


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "Task exception was never retrieved", None, info)


def test_a_dead_kernel_task_record_is_dropped_and_others_kept():
    f = runner._DeadKernelTasks()
    assert f.filter(_record(DeadKernelError("Kernel died"))) is False
    assert f.filter(_record(RuntimeError("something else"))) is True
    assert f.filter(logging.LogRecord("asyncio", logging.WARNING, __file__, 1, "no exception", None, None)) is True


def test_run_notebook_installs_the_filter_once(tmp_path):
    from lpulab.report.params import ParameterError

    log = logging.getLogger("asyncio")
    for _ in range(2):  # refused before any kernel starts, after the filter is in place
        with pytest.raises((ParameterError, OSError, ValueError)):
            runner.run_notebook(tmp_path / "missing.ipynb", reports=tmp_path / "r", progress=False, build_index=False)
    assert log.filters.count(runner._QUIET) == 1
