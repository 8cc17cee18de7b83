"""Stored Responses (`store: true`): what `previous_response_id`, `GET` and `DELETE
/v1/responses/{id}` read.

One SQLite file beside the model store (`$OLLAMA_MODELS/../responses/responses.sqlite3`,
so `~/.ollama/responses/` by default): each row is one response object plus the
conversation items that led to it, as JSON. SQLite gives what a store of conversation
state needs without more code: every write is one transaction (a crash leaves the old
state or the new, never half), it survives a restart, and several server threads can read
and write it. The store is bounded: after each write the oldest responses are evicted
until both the count and the total size fit, so an agent that never deletes cannot fill
the disk.

Calls are blocking (file I/O); routes run them in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    bytes INTEGER NOT NULL,
    body TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response object and the conversation behind it: `items` is the input it was
    given (stored history included), `response["output"]` what it answered."""

    response: Json
    items: list[Json]

    @property
    def conversation(self) -> list[Json]:
        """What a follow-up turn (`previous_response_id`) continues from."""
        return [*self.items, *self.response.get("output", [])]


class ResponseStore:
    """Responses kept in one SQLite file, oldest evicted past `max_count` or `max_bytes`."""

    def __init__(
        self,
        directory: Path,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = directory / "responses.sqlite3"
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        """A fresh connection per call (cheap, and safe across worker threads); the file
        and its table are created on first use, not at server start."""
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            with connection:
                connection.execute(_SCHEMA)
            self._ready = True
        return connection

    def put(self, stored: StoredResponse) -> None:
        """Save (or replace) a response, then evict the oldest past the bounds; one
        transaction, so readers see all of it or none."""
        body = json.dumps(
            {"response": stored.response, "items": stored.items},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        size = len(body.encode())
        with self._lock:
            connection = self._connect()
            try:
                with connection:
                    connection.execute(
                        "INSERT OR REPLACE INTO responses (id, bytes, body) VALUES (?, ?, ?)",
                        (stored.response["id"], size, body),
                    )
                    self._evict(connection)
            finally:
                connection.close()

    def _evict(self, connection: sqlite3.Connection) -> None:
        count, total = connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM responses"
        ).fetchone()
        if count <= self.max_count and total <= self.max_bytes:
            return
        rows = connection.execute("SELECT seq, bytes FROM responses ORDER BY seq").fetchall()
        cut = None
        for seq, size in rows[:-1]:  # the newest is always kept
            if count <= self.max_count and total <= self.max_bytes:
                break
            count, total, cut = count - 1, total - size, seq
        if cut is not None:
            connection.execute("DELETE FROM responses WHERE seq <= ?", (cut,))

    def get(self, response_id: str) -> StoredResponse | None:
        connection = self._connect()
        try:
            row = connection.execute(
                "SELECT body FROM responses WHERE id = ?", (response_id,)
            ).fetchone()
        finally:
            connection.close()
        if row is None:
            return None
        data = json.loads(row[0])
        return StoredResponse(data["response"], data["items"])

    def delete(self, response_id: str) -> bool:
        with self._lock:
            connection = self._connect()
            try:
                with connection:
                    cursor = connection.execute(
                        "DELETE FROM responses WHERE id = ?", (response_id,)
                    )
            finally:
                connection.close()
        return cursor.rowcount > 0

    def ids(self) -> list[str]:
        """Every stored id, oldest first (for tests and inspection)."""
        connection = self._connect()
        try:
            rows = connection.execute("SELECT id FROM responses ORDER BY seq").fetchall()
        finally:
            connection.close()
        return [row[0] for row in rows]
