"""The ComfyUI servers behind the service: which answer, how busy each is, which models each has, and which one
a job goes to (the least loaded healthy server that has the job's model)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from . import backend

MODELS_REFRESH_S = 60.0  # model lists are asked again this often (a file dropped into models/ shows up)


def describe_missing(missing: list[tuple]) -> str:
    """The refusal for a job whose files no server has, naming every one and the models/ folder it goes in."""
    files = ", ".join(f"{file} (models/{folder})" for _cls, _name, file, folder in missing)
    return (f"no ComfyUI server of this service has every file this job needs; missing: {files}. The service's "
            "operator must add them to the servers")


@dataclass
class Server:
    url: str
    index: int
    answering: bool = False  # answered the latest probe
    failing_since: float | None = None  # first unanswered probe of the current outage
    queue_length: int = 0  # prompts on the server (running + pending), ours or not
    prompt_ids: set = field(default_factory=set)
    running: set = field(default_factory=set)
    models: set | None = None
    files: dict | None = None  # backend.other_files: the loaders' other files, the safety classifiers
    models_at: float = 0.0
    last_error: str = ""
    probe_ok_count: int = 0

    def down_for(self, now: float) -> float:
        return 0.0 if self.failing_since is None else now - self.failing_since

    def describe(self, now: float) -> dict:
        return {"url": self.url, "answering": self.answering, "queue_length": self.queue_length,
                "down_for_s": round(self.down_for(now), 1), "models": sorted(self.models or []),
                "last_error": self.last_error}


class ServerPool:
    def __init__(self, urls: list[str], *, grace_s: float, timeout: float):
        self.servers = [Server(url.rstrip("/"), i) for i, url in enumerate(urls)]
        self.by_url = {s.url: s for s in self.servers}
        self.grace_s = grace_s
        self.timeout = timeout
        self._lock = threading.Lock()

    def probe(self, server: Server) -> None:
        """Asks one server for its queue (and its models when due); records an outage's start."""
        now = time.monotonic()
        try:
            queue = backend.status(server.url, self.timeout)
            if server.models is None or not server.answering or now - server.models_at > MODELS_REFRESH_S:
                server.models = backend.model_choices(server.url, self.timeout)
                server.files = backend.other_files(server.url, self.timeout)
                server.models_at = now
        except backend.ServerDown as err:
            with self._lock:
                server.answering = False
                server.last_error = str(err)
                if server.failing_since is None:
                    server.failing_since = now
            return
        with self._lock:
            server.answering, server.failing_since, server.last_error = True, None, ""
            server.queue_length, server.prompt_ids, server.running = queue.queue_length, queue.prompt_ids, \
                queue.running
            server.probe_ok_count += 1

    def probe_all(self) -> None:
        threads = [threading.Thread(target=self.probe, args=(s,), daemon=True) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def is_dead(self, url: str) -> bool:
        """Not answering for longer than the grace period (a restart or a stall shorter than that is waited out)."""
        server = self.by_url.get(url)
        return server is None or server.down_for(time.monotonic()) > self.grace_s

    def has_model_anywhere(self, model: str) -> bool | None:
        """True if an answering server has ``model``; False if every server answers and none has it; None when
        that cannot be told yet (some server is not answering)."""
        if any(s.answering and s.models and model in s.models for s in self.servers):
            return True
        if all(s.answering and s.models is not None for s in self.servers):
            return False
        return None

    def missing_files(self, needed) -> list[tuple] | None:
        """None when some server has every file in ``needed`` (backend.needed_files) or it cannot be told yet (a
        server is not answering); else the files missing from the server that lacks the fewest."""
        servers = [s for s in self.servers if s.answering and s.models is not None and s.files is not None]
        gaps = []
        for server in servers:
            gap = [item for item in needed if not self._has(server, item)]
            if not gap:
                return None
            gaps.append(gap)
        if not gaps or len(servers) < len(self.servers):
            return None
        return min(gaps, key=len)

    @staticmethod
    def _has(server: Server, item: tuple) -> bool:
        cls, name, file, _folder = item
        if (cls, name) == backend.MODEL_INPUT:
            return file in server.models
        listed = server.files.get((cls, name))
        return True if listed is None else file in listed  # a list the server does not give cannot be checked

    def choose(self, model: str, ours: dict[str, set], depth: int, avoid: list[str]) -> Server | None:
        """The least loaded answering server that has ``model`` and fewer than ``depth`` of our jobs (``ours``:
        url -> our prompt ids there). The load is every prompt the server held at the last probe plus ours sent
        since. Servers in ``avoid`` (where the job already failed) are used only if no other fits."""
        fits = [s for s in self.servers if s.answering and s.models and model in s.models
                and len(ours.get(s.url, ())) < depth]
        if not fits:
            return None
        fresh = [s for s in fits if s.url not in avoid] or fits
        return min(fresh, key=lambda s: (len(s.prompt_ids | ours.get(s.url, set())), s.index))

    def describe(self) -> list[dict]:
        now = time.monotonic()
        return [s.describe(now) for s in self.servers]
