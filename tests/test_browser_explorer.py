"""The API explorer (`/v1/ui/`, Swagger UI) in a real browser: headless Chromium, driven over the
DevTools protocol, against the app under gunicorn.

It reads the spec from `/v1/openapi.json` with its `$ref`s kept (app/api/reference.py), so this
also proves the Swagger UI resolves them. Chromium is Debian's (`apt-get install chromium`;
.ci/run installs it): the test fails when it is missing, it never skips.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import websocket
import yaml

from app.config import DEFAULT_SPEC

# Without the background-networking flags Chromium tries to reach Google's services at start,
# and on a closed network its own connections are then refused.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-debugging-port=0"]
METHODS = ("get", "put", "post", "patch", "delete")


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (.ci/run does it)",
                    pytrace=False)
    return binary


class Page:
    """One browser tab, spoken to over the DevTools protocol (a websocket of JSON messages)."""

    def __init__(self, socket: websocket.WebSocket):
        self.socket = socket
        self.ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        ident = next(self.ids)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:   # events and other answers are not ours
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30):
        """Poll `expression` in the page until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def click(self, selector: str, text: str | None = None, within: str = "document") -> None:
        """Click the first element matching `selector` (whose text is `text`, if given)."""
        found = self.wait_for(
            f"""(() => {{
                const el = [...{within}.querySelectorAll({json.dumps(selector)})]
                    .find(e => {json.dumps(text)} === null || e.textContent.trim() === {json.dumps(text)});
                if (!el) return false;
                el.click();
                return true;
            }})()""", f"{selector} {text or ''}".strip())
        assert found

    def type_into(self, selector: str, value: str) -> None:
        """Type into a React-controlled input (set through the native setter, then `input`)."""
        assert self.wait_for(
            f"""(() => {{
                const input = document.querySelector({json.dumps(selector)});
                if (!input) return false;
                const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
                setter.call(input, {json.dumps(value)});
                input.dispatchEvent(new Event('input', {{bubbles: true}}));
                return true;
            }})()""", selector)


@pytest.fixture
def page(tmp_path):
    """A fresh headless Chromium (its own profile) and its one tab."""
    profile = tmp_path / "chromium-profile"
    log_path = tmp_path / "chromium.log"
    with open(log_path, "w") as log:
        browser = subprocess.Popen([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                    "about:blank"], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if browser.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start: {log_path.read_text()[-2000:]}", pytrace=False)
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        tab = next(t for t in targets if t["type"] == "page")
        socket = websocket.create_connection(tab["webSocketDebuggerUrl"], timeout=30,
                                             suppress_origin=True)
        try:
            yield Page(socket)
        finally:
            socket.close()
    finally:
        _stop(browser)


def _stop(browser: subprocess.Popen) -> None:
    try:
        os.killpg(browser.pid, signal.SIGTERM)
        browser.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(browser.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        browser.wait(timeout=10)


def spec_operations() -> set[tuple[str, str]]:
    spec = yaml.safe_load(Path(DEFAULT_SPEC).read_text())
    return {(method.upper(), path) for path, item in spec["paths"].items()
            for method in item if method in METHODS}


def test_the_explorer_lists_every_operation_and_tries_one_with_a_key(live_server, customer, page):
    page.call("Page.navigate", url=f"{live_server}/ui/")
    expected = spec_operations()
    # Every operation of the spec is listed (method and path, as the explorer shows them).
    listed = page.wait_for(
        f"""(() => {{
            const blocks = [...document.querySelectorAll('.opblock')].map(b => [
                b.querySelector('.opblock-summary-method').textContent.trim(),
                b.querySelector('.opblock-summary-path').getAttribute('data-path')]);
            return blocks.length >= {len(expected)} && blocks;
        }})()""", "the operations to be listed")
    assert {tuple(pair) for pair in listed} == expected
    assert len(listed) == len(expected)

    # Authorize with a management key, as a user would: the dialog, the field, the button.
    page.click(".auth-wrapper .btn.authorize")
    page.type_into(".modal-ux input", customer[1])
    page.click(".modal-ux button", "Authorize")
    page.wait_for("[...document.querySelectorAll('.modal-ux button')].some(b => b.textContent.trim() === 'Logout')",
                  "the key to be accepted")
    page.click(".modal-ux button", "Close")

    # Try it out on GET /connections: the request goes out with the key and answers 200.
    operation = "document.getElementById('operations-Connections-list_connections')"
    page.click(".opblock-summary-control", within=operation)
    page.click("button.try-out__btn", "Try it out", within=operation)
    page.click("button.execute", "Execute", within=operation)
    status = page.wait_for(
        f"""(() => {{
            const cell = {operation}.querySelector('.live-responses-table tr.response .response-col_status');
            return cell && cell.textContent.trim();
        }})()""", "the answer")
    assert status == "200"
    body = page.evaluate(f"{operation}.querySelector('.live-responses-table tr.response "
                         f".response-col_description .microlight').textContent")
    assert json.loads(body) == []
    # The explorer sent the key (a request without one is a 401).
    curl = page.evaluate(f"{operation}.querySelector('.curl-command').textContent")
    assert "Authorization: Bearer rmk_" in curl
