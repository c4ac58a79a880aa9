"""Fixtures for the report tests: one real sweep of 01_bandwidth (shared by the session), one
run of the markup fixture notebook, and a headless Chromium driven over the DevTools protocol."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PROBE = FIXTURES / "notebooks" / "markup_probe.ipynb"

# Two sets that complete and one that fails in a cell: LPU v1 has no fp8 peak, so the roofline
# cell raises ValueError.
GRID = """\
name: probe
base_file: smoke
sets:
  - {gpu_achieved: 1.0}
  - {gpu_achieved: 0.5}
  - {precision: fp8}
"""
MARKUP = '<b id="injected">bold</b><script>document.title="pwned"</script> & <img src="x" onerror="1">'


def stop(proc: subprocess.Popen, grace: float = 0.0) -> None:
    """End a server process: wait ``grace`` seconds for it to exit by itself, then
    terminate it, then kill it; never hang longer than about 20 s beyond the grace."""
    try:
        proc.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def stop_process():
    """The :func:`stop` helper, for test modules that start servers."""
    return stop


@pytest.fixture(scope="session")
def probe_notebook() -> Path:
    return PROBE


@pytest.fixture(scope="session")
def markup() -> str:
    return MARKUP


@pytest.fixture(scope="session")
def sweep_run(tmp_path_factory):
    """reports/ after `run_sweep` of GRID with two local workers: (result, reports dir, grid file)."""
    from lpulab.report.sweep import run_sweep

    base = tmp_path_factory.mktemp("sweep")
    grid = base / "probe.yaml"
    grid.write_text(GRID)
    reports = base / "reports"
    result = run_sweep("01_bandwidth", grid, reports=reports, workers=2, progress=False, timeout=300)
    return result, reports, grid


@pytest.fixture(scope="session")
def crossover_run(tmp_path_factory):
    """reports/ after notebook 06_crossover's smoke set and notebook 01's smoke set ran
    through the real runner, with the index built: (06 result, reports dir)."""
    from lpulab import paths
    from lpulab.report.index import build
    from lpulab.report.runner import run_notebook

    reports = tmp_path_factory.mktemp("crossover") / "reports"
    r = run_notebook("06_crossover", param_file=paths.PARAMS / "06_crossover" / "smoke.yaml", reports=reports,
                     progress=False, build_index=False, timeout=600)
    assert r.ok, r.error
    b = run_notebook("01_bandwidth", param_file=paths.PARAMS / "01_bandwidth" / "smoke.yaml", reports=reports,
                     progress=False, build_index=False, timeout=600)
    assert b.ok, b.error
    build(reports)
    return r, reports


@pytest.fixture(scope="session")
def markup_run(tmp_path_factory):
    """The fixture notebook run through the real runner with markup in its free-text parameter."""
    from lpulab.report.runner import run_notebook

    reports = tmp_path_factory.mktemp("markup") / "reports"
    r = run_notebook(PROBE, {"note": MARKUP}, reports=reports, progress=False, timeout=120)
    assert r.ok, r.error
    return r, reports


# --- headless Chromium over the DevTools protocol ---------------------------------------------

def chromium_binary() -> str | None:
    for name in (os.environ.get("LPULAB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class Page:
    """A tiny CDP client: one page target, commands answered in order, events collected."""

    def __init__(self, ws_url: str, timeout: float = 30):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params):
        mid = next(self.ids)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        for e in self.events[:seen]:
            if e["method"] == method:
                self.events.remove(e)
                return e
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str):
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:60]}...: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, url: str, settle: float = 0.5) -> None:
        self.events.clear()
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        time.sleep(settle)  # late console messages and image decodes
        self.evaluate("1")  # drain events that arrived meanwhile

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads since the last open()."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"load failed: {p.get('errorText')} ({p.get('type')})")
        return out

    def screenshot(self, path: Path, width: int = 1280, max_height: int = 12000) -> Path:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=600, deviceScaleFactor=1, mobile=False)
        h = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=min(int(h), max_height),
                  deviceScaleFactor=1, mobile=False)
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]  # at most max_height
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self):
        self.ws.close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """A page in headless Chromium on a loopback DevTools port; closed at the end."""
    exe = chromium_binary()
    if exe is None:
        why = "Debian's chromium is not installed (scripts/ensure-chromium.sh installs it as root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}; CI must run the browser test")
        pytest.skip(why)
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115 (closed after the browser stops)
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
         "--window-size=1280,1000", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    page = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromium did not open its DevTools port; see {profile.parent / 'chromium.log'}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as f:
            targets = json.load(f)
        target = next(t for t in targets if t["type"] == "page")
        page = Page(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.send(f"{domain}.enable")
        yield page
    finally:
        if page is not None:
            page.close()
        stop(proc)
        log.close()


# --- a stand-in for papermill: an "executed" notebook with a recorded payload, in milliseconds ----

RUN_PROBE = FIXTURES / "notebooks" / "run_probe.ipynb"


def executed_copy(nb_path: Path, executed: Path, results: dict | None = None, verdicts=()) -> None:
    """Write ``nb_path`` as if it had run and recorded ``results``."""
    import nbformat

    from lpulab.report.record import MIME

    nb = nbformat.read(nb_path, as_version=4)
    payload = {"results": results if results is not None else {"x": 1.5, "stem": nb_path.stem},
               "verdicts": list(verdicts), "files_read": {}, "lpulab_version": "test"}
    cell = nbformat.v4.new_code_cell("record(results)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={MIME: payload, "text/plain": "recorded"})]
    nb.cells.append(cell)
    nbformat.write(nb, executed)


@pytest.fixture
def fake_kernel(monkeypatch):
    """Replace the kernel run by :func:`executed_copy`; ``calls`` lists the notebooks 'run'.
    Set ``behaviour[stem] = callable(nb_path, executed)`` to do something else for a notebook."""
    from lpulab.report import runner

    calls: list[str] = []
    behaviour: dict = {}

    def execute(nb_path, executed, params, timeout, progress):
        calls.append(Path(nb_path).stem)
        if Path(nb_path).stem in behaviour:
            return behaviour[Path(nb_path).stem](nb_path, executed)
        executed_copy(Path(nb_path), Path(executed))
        return "", "", None

    monkeypatch.setattr(runner, "_execute", execute)
    return calls, behaviour


@pytest.fixture(scope="session")
def run_probe() -> Path:
    return RUN_PROBE


@pytest.fixture(scope="session")
def make_executed():
    """:func:`executed_copy`, for tests that fake a run themselves."""
    return executed_copy


@pytest.fixture(autouse=True)
def _own_data_env(monkeypatch):
    """`--data` sets LPULAB_DATA in this process: each test gets it back as it was."""
    monkeypatch.setenv("LPULAB_DATA", "")
    monkeypatch.delenv("LPULAB_DATA")
