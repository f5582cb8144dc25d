"""The service's jobs in one SQLite file (stdlib sqlite3, WAL journal): what was asked, where it runs, what came
out. Every change of a job is written before the service acts on it, so a restarted service finds each job where
it was: waiting, on a ComfyUI server (to be followed again), or finished (its results still served)."""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from framepack_client.job_states import ACTIVE, FINAL, QUEUED


@dataclass
class JobRecord:
    id: str
    contract: str  # "wavespeed" or "fal"
    endpoint: str  # the contract's model id, e.g. wavespeed-ai/framepack, fal-ai/framepack/flf2v
    params: dict  # validated hosted parameters; images are files in the service's inputs folder
    seed: int  # resolved before the first dispatch: every attempt makes the same video
    workflow: str  # API workflow file
    model_file: str  # the FramePackModelLoader model a server must have
    created_at: str
    # framepack_client.job_states: QUEUED waits for a server, DISPATCHED was sent to one that has not started it,
    # RUNNING runs there (or its videos are being downloaded); the FINAL ones are over
    status: str = QUEUED
    seq: int = 0  # submission order (set by the store)
    server: str | None = None
    prompt_id: str | None = None
    graph: dict | None = None  # the filled prompt sent to the server
    attempts: int = 0
    tried: list = field(default_factory=list)  # servers this job was sent to, in order
    notes: list = field(default_factory=list)  # why earlier attempts were abandoned
    error: str = ""
    dispatched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    inference_ms: int | None = None
    outputs: list = field(default_factory=list)  # [{token, file, size, content_type}] in the outputs folder
    nsfw: list = field(default_factory=list)  # per output: flagged by the safety checker
    nsfw_score: float | None = None
    cancel_requested: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL


_JSON_FIELDS = ("params", "graph", "tried", "notes", "outputs", "nsfw")
_COLUMNS = [f.name for f in fields(JobRecord)]


class JobStore:
    """Thread-safe access to the jobs table of ``path`` (created with its folder if missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        cols = ", ".join(f"{c} TEXT" if c != "seq" else "seq INTEGER PRIMARY KEY AUTOINCREMENT"
                         for c in _COLUMNS if c != "id")
        self._db.execute(f"CREATE TABLE IF NOT EXISTS jobs (id TEXT UNIQUE NOT NULL, {cols})")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- rows <-> records

    @staticmethod
    def _encode(job: JobRecord) -> dict[str, Any]:
        row = asdict(job)
        for name in _JSON_FIELDS:
            row[name] = json.dumps(row[name])
        row["cancel_requested"] = int(job.cancel_requested)
        return row

    @staticmethod
    def _decode(row: sqlite3.Row | tuple, names: list[str]) -> JobRecord:
        data = dict(zip(names, row))
        for name in _JSON_FIELDS:
            data[name] = json.loads(data[name]) if data[name] is not None else None
        data["cancel_requested"] = bool(int(data["cancel_requested"] or 0))
        for name in ("seed", "attempts", "inference_ms"):
            data[name] = int(data[name]) if data[name] is not None else None
        for name in ("dispatched_at", "started_at", "finished_at", "nsfw_score"):
            data[name] = float(data[name]) if data[name] is not None else None
        return JobRecord(**data)

    def _select(self, where: str = "", args: tuple = ()) -> list[JobRecord]:
        with self._lock:
            cursor = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {where}", args)
            rows = cursor.fetchall()
        return [self._decode(row, _COLUMNS) for row in rows]

    # -- operations

    def add(self, job: JobRecord) -> JobRecord:
        row = self._encode(job)
        del row["seq"]
        with self._lock:
            cursor = self._db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                      tuple(row.values()))
            job.seq = cursor.lastrowid
        return job

    def save(self, job: JobRecord) -> None:
        """Writes the job; ``cancel_requested`` is left as stored (only :meth:`request_cancel` sets it, so a
        writer holding an older copy cannot undo a cancel)."""
        row = self._encode(job)
        del row["id"], row["seq"], row["cancel_requested"]
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
                             (*row.values(), job.id))

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def get(self, job_id: str) -> JobRecord | None:
        found = self._select("WHERE id = ?", (job_id,))
        return found[0] if found else None

    def active(self) -> list[JobRecord]:
        """Jobs not finished, oldest first."""
        return self._select(f"WHERE status IN ({', '.join('?' * len(ACTIVE))}) ORDER BY seq", ACTIVE)

    def queue_position(self, job: JobRecord) -> int:
        """How many jobs wait ahead of ``job`` for a server (0 when it is next, or already sent)."""
        if job.status != QUEUED:
            return 0
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM jobs WHERE status = ? AND seq < ?",
                                        (QUEUED, job.seq)).fetchone()
        return int(count)

    def by_output_token(self, token: str) -> tuple[JobRecord, dict] | None:
        for job in self._select("WHERE outputs LIKE ?", (f"%{token}%",)):
            for output in job.outputs:
                if output.get("token") == token:
                    return job, output
        return None

    def count_active(self) -> int:
        with self._lock:
            (count,) = self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({', '.join('?' * len(ACTIVE))})",
                                        ACTIVE).fetchone()
        return int(count)

    def delete_finished(self, finished_before: float) -> list[JobRecord]:
        """Removes the finished jobs that ended before ``finished_before`` (time.time()); returns them."""
        where = f"WHERE status IN ({', '.join('?' * len(FINAL))}) AND CAST(finished_at AS REAL) < ?"
        gone = self._select(where, (*FINAL, float(finished_before)))
        with self._lock:
            self._db.executemany("DELETE FROM jobs WHERE id = ?", [(job.id,) for job in gone])
        return gone

    def input_files(self) -> set[str]:
        """The stored input images the remaining jobs name."""
        return {value for job in self._select() for key, value in job.params.items()
                if key in ("image", "end_image") and isinstance(value, str)}

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
