"""Load workflows into the REAL ComfyUI frontend in headless chromium and read back what it reports.

Driven with the python ``playwright`` package against the system chromium (Debian ``chromium``,
``/usr/bin/chromium``, override with ``CHROMIUM_PATH``); playwright's own browser downloads are never used.

How the frontend (comfyui-frontend-package 1.32.9) flags missing nodes, read from its bundle:
``app.loadGraphData(workflow)`` walks the workflow's nodes (and subgraph definitions), collects every
``type`` not in ``LiteGraph.registered_node_types`` (strings, or ``{type, hint}`` for nodes inside a
subgraph) and passes that list to ``app.showMissingNodesError``, which opens the "This workflow has
missing nodes" dialog listing them. The graph keeps such a node as a placeholder with ``has_errors``
set and the original JSON in ``last_serialization`` (drawn with a red outline). We wrap
``showMissingNodesError`` to record its argument (the frontend's own report), and also read the
placeholders and the dialog text, so a test can check all three agree.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]

_READY_JS = """() => !!(window.app && window.app.graph && window.app.vueAppReady && window.LiteGraph
    && window.LiteGraph.registered_node_types && ('SaveImage' in window.LiteGraph.registered_node_types))"""

# Records what loadGraphData hands to the missing-nodes dialog, then shows the dialog as usual.
_HOOK_JS = """() => {
    if (window.__framepackMissingHook) return;
    window.__framepackMissingHook = true;
    window.__framepackMissing = [];
    const original = window.app.showMissingNodesError.bind(window.app);
    window.app.showMissingNodesError = (types) => {
        window.__framepackMissing.push(JSON.parse(JSON.stringify(types)));
        return original(types);
    };
}"""

# After loading, fit the whole graph into the view (the frontend's own "Fit view" command) so the screenshot
# shows every node; an older frontend without the command keeps the workflow's saved view.
_LOAD_JS = """async (workflow) => {
    window.__framepackMissing = [];
    await window.app.loadGraphData(workflow);
    const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    await frame();  // node sizes are known only once the canvas has drawn them
    try {
        window.app.canvas.deselectAll();
        await window.app.extensionManager.command.execute('Comfy.Canvas.FitView');
        await frame();
    } catch (e) {}
    return true;
}"""

_STATE_JS = """() => ({
    reported: window.__framepackMissing,
    placeholders: window.app.graph.nodes.filter(n => n.has_errors)
        .map(n => (n.last_serialization && n.last_serialization.type) || n.type),
    nodeCount: window.app.graph.nodes.length,
})"""

_DIALOGS_JS = "() => Array.from(document.querySelectorAll('.p-dialog')).map(d => d.innerText)"


def chromium_path() -> str:
    return os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@dataclass
class WorkflowCheck:
    """What the frontend showed after loading one workflow.

    ``missing_node_types``: the types the frontend reported as missing (what its dialog lists), in order,
    without duplicates. ``placeholder_node_types``: graph nodes it could not create (red outline).
    ``dialog_texts``: text of every open dialog. ``console_errors``: browser console errors and failed
    requests seen so far on the page (for diagnosis; the frontend logs some even for good workflows).
    """

    missing_node_types: list[str]
    placeholder_node_types: list[str]
    dialog_texts: list[str]
    node_count: int
    screenshot: Path
    console_errors: list[str] = field(default_factory=list)
    load_seconds: float = 0.0


def _type_name(entry: Any) -> str:
    return entry.get("type", "") if isinstance(entry, dict) else str(entry)


class ComfyFrontend:
    """A headless chromium page on a running ComfyUI server's frontend. Use as a context manager.

    Opening it marks the tutorial as completed (``POST /settings/Comfy.TutorialCompleted``) so the
    templates dialog does not cover the canvas, loads the page and waits until the node definitions
    are registered.
    """

    def __init__(self, base_url: str, viewport: tuple[int, int] = (1920, 1080), timeout_s: float = 90.0,
                 executable: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.viewport = viewport
        self.timeout_ms = int(timeout_s * 1000)
        self.executable = executable or chromium_path()
        self.console_errors: list[str] = []
        self.open_seconds: float | None = None
        self._playwright = None
        self._browser = None
        self.page = None

    def _post_setting(self, name: str, value: Any) -> None:
        request = urllib.request.Request(f"{self.base_url}/settings/{name}", data=json.dumps(value).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    def open(self) -> "ComfyFrontend":
        if not Path(self.executable).exists():
            raise FileNotFoundError(
                f"chromium not found at {self.executable}: install Debian's `chromium` "
                "(apt-get install -y chromium) or set CHROMIUM_PATH")
        from playwright.sync_api import sync_playwright  # test-only dependency, imported when used

        started = time.monotonic()
        self._post_setting("Comfy.TutorialCompleted", True)
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(executable_path=self.executable, args=CHROMIUM_FLAGS,
                                                             headless=True)
            width, height = self.viewport
            self.page = self._browser.new_page(viewport={"width": width, "height": height})
            self.page.on("console", self._on_console)
            self.page.on("response", self._on_response)
            self.page.goto(self.base_url + "/", timeout=self.timeout_ms)
            self.page.wait_for_function(_READY_JS, timeout=self.timeout_ms)
            self.page.evaluate(_HOOK_JS)
        except BaseException:
            self.close()
            raise
        self.open_seconds = time.monotonic() - started
        return self

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _on_response(self, response: Any) -> None:
        if response.status >= 400:
            self.console_errors.append(f"HTTP {response.status} {response.url}")

    def close_dialogs(self) -> None:
        """Dismiss open dialogs (Escape), so the next workflow starts from a clear screen."""
        for _ in range(3):
            if not self.page.evaluate(_DIALOGS_JS):
                return
            self.page.keyboard.press("Escape")
            self.page.wait_for_timeout(200)

    def load_workflow(self, workflow: dict | str | Path, screenshot: str | Path,
                      settle_ms: int = 800) -> WorkflowCheck:
        """Load a UI-format workflow (dict, or path to its JSON) with ``app.loadGraphData`` and report.

        Waits ``settle_ms`` for the canvas (and any dialog) to render, then saves a PNG at ``screenshot``.
        """
        if not isinstance(workflow, dict):
            workflow = json.loads(Path(workflow).read_text())
        self.close_dialogs()
        started = time.monotonic()
        self.page.evaluate(_LOAD_JS, workflow)
        state = self.page.evaluate(_STATE_JS)
        reported = [_type_name(t) for batch in state["reported"] for t in batch]
        if reported:  # the dialog opens asynchronously after loadGraphData returns
            self.page.wait_for_selector(".p-dialog", timeout=10_000)
        self.page.wait_for_timeout(settle_ms)
        load_seconds = time.monotonic() - started
        screenshot = Path(screenshot)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(screenshot))
        return WorkflowCheck(
            missing_node_types=list(dict.fromkeys(reported)),
            placeholder_node_types=state["placeholders"],
            dialog_texts=self.page.evaluate(_DIALOGS_JS),
            node_count=state["nodeCount"],
            screenshot=screenshot,
            console_errors=list(self.console_errors),
            load_seconds=load_seconds,
        )

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
            self._browser = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None

    def __enter__(self) -> "ComfyFrontend":
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

