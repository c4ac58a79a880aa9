"""The notebooks as a person meets them in JupyterLab: a real `jupyter lab` on loopback with a
token, the notebooks listed through its REST API, one opened in a session (as JupyterLab's
UI does) and its cells executed over the kernel's websocket; then everything shut down."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from lpulab import paths
from lpulab.report.record import MIME

NOTEBOOK = "notebooks/01_bandwidth.ipynb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    def __init__(self, port: int, token: str):
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def api(self, method: str, path: str, body=None, timeout: float = 30):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as f:
            raw = f.read()
            return f.status, (json.loads(raw) if raw else None)


@pytest.fixture
def lab(tmp_path, stop_process):
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 (closed in the finally block)
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={paths.ROOT}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"] + (["--allow-root"] if getattr(os, "geteuid", lambda: 1)() == 0 else []),
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    server = Lab(port, token)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if server.api("GET", "/api/status", timeout=5)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer on 127.0.0.1:{port}; see {tmp_path / 'jupyterlab.log'}")
            time.sleep(0.3)
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.api("POST", "/api/shutdown", timeout=10)
        stop_process(proc, grace=20)
        log.close()


def execute(ws, code: str, timeout: float = 120) -> dict:
    """Run one cell over the kernel's websocket; return its reply and iopub outputs."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": "test",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    outputs, reply, idle = [], None, False
    deadline = time.monotonic() + timeout
    while not (reply and idle):
        if time.monotonic() > deadline:
            raise TimeoutError(f"cell did not finish in {timeout} s: {code[:60]}")
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if msg["channel"] == "shell" and kind == "execute_reply":
            reply = msg["content"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
        elif kind in ("stream", "display_data", "execute_result", "error"):
            outputs.append(msg)
    return {"reply": reply, "outputs": outputs}


def test_jupyterlab_lists_and_runs_a_notebook(lab):
    import websocket

    # the server is JupyterLab (its /lab page answers), and it lists the notebooks
    status, page = None, None
    req = urllib.request.Request(lab.base + "/lab", headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(req, timeout=30) as f:
        status, page = f.status, f.read().decode()
    assert status == 200 and "JupyterLab" in page
    _, listing = lab.api("GET", "/api/contents/notebooks")
    names = {c["name"] for c in listing["content"] if c["type"] == "notebook"}
    assert "01_bandwidth.ipynb" in names
    _, model = lab.api("GET", f"/api/contents/{NOTEBOOK}")
    cells = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
    assert any("parameters" in c["metadata"].get("tags", []) for c in cells)

    # open it as JupyterLab does: a session with a python3 kernel
    code, session = lab.api("POST", "/api/sessions", {"path": NOTEBOOK, "type": "notebook", "name": "01_bandwidth.ipynb",
                                                      "kernel": {"name": "python3"}})
    assert code == 201
    kid = session["kernel"]["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{lab.base.rsplit(':', 1)[1]}/api/kernels/{kid}/channels?token={lab.token}",
        timeout=120, suppress_origin=True)
    try:
        kinds = set()
        for c in cells:
            r = execute(ws, c["source"])
            errors = [o["content"] for o in r["outputs"] if o["header"]["msg_type"] == "error"]
            assert r["reply"]["status"] == "ok" and not errors, (c["source"][:80], errors)
            for o in r["outputs"]:
                kinds |= set(o["content"].get("data", {}))
        assert "image/png" in kinds          # the figures were drawn
        assert MIME in kinds                 # and the last cell recorded the results
    finally:
        ws.close()
        code, _ = lab.api("DELETE", f"/api/sessions/{session['id']}")
        assert code == 204
    _, kernels = lab.api("GET", "/api/kernels")
    assert kid not in {k["id"] for k in kernels}


def _send(ws, msg_type: str, content: dict, channel: str = "shell") -> str:
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test", "session": "test",
                                   "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": channel, "buffers": [], "content": content}))
    return msg_id


def _replies(ws, msg_id: str, timeout: float = 120) -> list[dict]:
    """Every iopub message a request caused, until the kernel is idle again."""
    got, deadline = [], time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no idle after {msg_id} in {timeout} s")
        try:
            msg = json.loads(ws.recv())
        except (UnicodeDecodeError, ValueError):  # a binary frame (widget buffers): not ours
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return got
        got.append(msg)


def _run(ws, code: str) -> list[dict]:
    out = _replies(ws, _send(ws, "execute_request", {"code": code, "silent": False, "store_history": True,
                                                      "user_expressions": {}, "allow_stdin": False,
                                                      "stop_on_error": True}))
    errors = [m["content"] for m in out if m["header"]["msg_type"] == "error"]
    assert not errors, (code[:80], errors)
    return out


def _pngs(msgs) -> list[str]:
    return [m["content"]["data"]["image/png"] for m in msgs
            if m["header"]["msg_type"] == "display_data" and "image/png" in m["content"].get("data", {})]


def test_the_explorer_redraws_when_a_control_moves(lab):
    """notebooks/explore.ipynb in a real JupyterLab: its cell builds the widgets and draws;
    then a slider is moved the way the browser moves it (a comm message to the widget's
    model) and the figure and the summary are redrawn with other numbers."""
    import websocket

    path = "notebooks/explore.ipynb"
    _, model = lab.api("GET", f"/api/contents/{path}")
    cells = [c for c in model["content"]["cells"] if c["cell_type"] == "code"]
    assert len(cells) == 1 and "Explorer(" in cells[0]["source"]
    code, session = lab.api("POST", "/api/sessions", {"path": path, "type": "notebook", "name": "explore.ipynb",
                                                      "kernel": {"name": "python3"}})
    assert code == 201
    kid = session["kernel"]["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{lab.base.rsplit(':', 1)[1]}/api/kernels/{kid}/channels?token={lab.token}",
        timeout=180, suppress_origin=True)
    try:
        first = _run(ws, cells[0]["source"])
        opened = [m for m in first if m["header"]["msg_type"] == "comm_open"]
        assert opened and all(m["content"]["target_name"] == "jupyter.widget" for m in opened)
        shown = [m for m in first if m["header"]["msg_type"] in ("display_data", "execute_result")
                 and "application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})]
        assert shown, "the cell shows the widgets"
        before_png = _pngs(first)
        assert before_png, "the first drawing is displayed into the figure's Output widget"
        ids = _run(ws, "import json; print(json.dumps({'slider': ui.controls['utilisation'].model_id, "
                       "'summary': ui.summary.model_id, 'value': ui.summary.value, 'redraws': ui.redraws}))")
        info = json.loads("".join(m["content"]["text"] for m in ids if m["header"]["msg_type"] == "stream"))
        # move the utilisation slider as the browser does: an update of the widget model's state
        msgs = _replies(ws, _send(ws, "comm_msg", {"comm_id": info["slider"],
                                                   "data": {"method": "update", "state": {"value": 0.3},
                                                            "buffer_paths": []}}))
        after_png = _pngs(msgs)
        assert after_png and after_png[-1] != before_png[-1], "the figure was redrawn with other numbers"
        updates = [m["content"]["data"]["state"] for m in msgs if m["header"]["msg_type"] == "comm_msg"
                   and m["content"]["comm_id"] == info["summary"] and "value" in m["content"]["data"].get("state", {})]
        assert updates and updates[-1]["value"] != info["value"], "the summary shows other numbers"
        check = _run(ws, "print(ui.controls['utilisation'].value, ui.redraws, round(ui.last_redraw_s, 3))")
        val, redraws, _ = "".join(m["content"]["text"] for m in check if m["header"]["msg_type"] == "stream").split()
        assert float(val) == 0.3 and int(redraws) == info["redraws"] + 1
    finally:
        ws.close()
        code, _ = lab.api("DELETE", f"/api/sessions/{session['id']}")
        assert code == 204
