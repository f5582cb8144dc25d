"""A terminal progress display for one prompt's ComfyUI websocket events.

FramePack Sampler reports one progress bar over all sections' steps (value = section * steps + step + 1,
max = sections * steps), so with the prompt's num_inference_steps the display shows "section i/n step j/k" and the
percentage; the video node's bar counts decoded chunks. On a terminal the line is redrawn in place; otherwise
(a log file, a pipe) a line is written when a section or node starts or ends, and at most once a second between.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .terminal import printable

BAR_WIDTH = 24


def _bar(fraction: float) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * BAR_WIDTH))
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]"


def describe_progress(value: int, maximum: int, steps: int | None) -> str:
    """'section i/n step j/k' for the sampler's combined bar (value counts from 1), else 'value/max'."""
    if steps and maximum % steps == 0 and 1 <= value <= maximum:
        sections = maximum // steps
        return f"section {(value - 1) // steps + 1}/{sections} step {(value - 1) % steps + 1}/{steps}"
    return f"{value}/{maximum}"


class ProgressDisplay:
    """Call it with every websocket message (``{"type", "data"}``); messages of other prompts are ignored.

    ``graph`` is the API prompt that was queued (node classes and the sampler's steps come from it).
    """

    def __init__(self, prompt_id: str | None, graph: dict | None, stream: TextIO | None = None, *,
                 enabled: bool = True, tty: bool | None = None, min_interval: float = 1.0, label: str = ""):
        self.prompt_id = prompt_id
        self.graph = graph or {}
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty() if tty is None else tty
        self.min_interval = min_interval
        self.label = f"{label} " if label else ""
        self.events = 0  # progress events of this prompt
        self._last_line = ""
        self._last_time = 0.0
        self._last_key: tuple = ()
        self._open_line = False

    def _node_class(self, node_id) -> str:
        return (self.graph.get(str(node_id)) or {}).get("class_type", f"node {node_id}")

    def _steps_of(self, node_id) -> int | None:
        node = self.graph.get(str(node_id)) or {}
        if node.get("class_type") != "FramePackSampler":
            return None
        steps = (node.get("inputs") or {}).get("num_inference_steps")
        return steps if isinstance(steps, int) else None

    def __call__(self, message: dict) -> None:
        data = message.get("data") or {}
        if not isinstance(data, dict) or (self.prompt_id and data.get("prompt_id") != self.prompt_id):
            return
        kind = message.get("type")
        if kind == "progress":
            self.events += 1
            node, value, maximum = data.get("node"), int(data.get("value", 0)), int(data.get("max", 1) or 1)
            cls = self._node_class(node)
            steps = self._steps_of(node)
            where = describe_progress(value, maximum, steps)
            if cls == "FramePackSampler":
                text = f"{_bar(value / maximum)} {100 * value / maximum:5.1f}% sampling {where}"
                key = (node, where.split(" step")[0])
            elif cls == "FramePackVideoCombine":
                text = f"{_bar(value / maximum)} {100 * value / maximum:5.1f}% decoding + writing MP4 {where}"
                key = (node,)
            else:
                text = f"{_bar(value / maximum)} {100 * value / maximum:5.1f}% {cls} {where}"
                key = (node,)
            self._show(text, important=key != self._last_key or value >= maximum)
            self._last_key = key
        elif kind == "executing" and data.get("node") is not None:
            self._show(f"running {self._node_class(data['node'])}", important=True)
            self._last_key = ()

    def _show(self, text: str, important: bool) -> None:
        if not self.enabled:
            return
        text = printable(self.label + text)  # node ids and class names come from the server
        now = time.monotonic()
        if self.tty:
            pad = max(0, len(self._last_line) - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._open_line = True
        elif important or now - self._last_time >= self.min_interval:
            self.stream.write(text + "\n")
        else:
            return
        self.stream.flush()
        self._last_line, self._last_time = text, now

    def close(self) -> None:
        if self.enabled and self.tty and self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False
