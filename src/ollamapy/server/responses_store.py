"""Stored Responses (`store: true`) and conversations: what `previous_response_id`,
`conversation`, `GET` and `DELETE /v1/responses/{id}` and `/v1/conversations/{id}` read.

One SQLite file beside the model store (`$OLLAMA_MODELS/../responses/responses.sqlite3`,
so `~/.ollama/responses/` by default): each row is one response object plus the
conversation items that led to it, as JSON; a conversation row holds its object and items.
SQLite gives what a store of conversation state needs without more code: every write is
one transaction (a crash leaves the old state or the new, never half), it survives a
restart, and the server's threads share one kept connection (in WAL mode, under a lock).
The store is bounded: after each write the oldest rows are evicted until both the count
and the total size fit, so an agent that never deletes cannot fill the disk.

Calls are blocking (file I/O); routes run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 512 * 1024 * 1024

_TABLES = ("responses", "conversations")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
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


@dataclass(frozen=True, slots=True)
class StoredConversation:
    """A conversation (OpenAI's Conversations API): its object and its items so far."""

    conversation: Json
    items: list[Json]


class ResponseStore:
    """Responses and conversations kept in one SQLite file; in each table the oldest
    (least recently written) are evicted past `max_count` rows or `max_bytes`."""

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
        self._connection: sqlite3.Connection | None = None

    @contextlib.contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        """The store's one connection, for one caller at a time. It is opened on first use
        (the file and tables are created then, not at server start) and kept: in WAL mode
        with `synchronous=NORMAL` a commit is an append without an fsync, which holds only
        while a connection stays open (closing the last one checkpoints and syncs). A power
        cut may lose the newest writes, never tear one."""
        with self._lock:
            if self._connection is None:
                self._connection = self._open()
            yield self._connection

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        with connection:
            for table in _TABLES:
                connection.execute(_SCHEMA.format(table=table))
        return connection

    def close(self) -> None:
        """Close the connection (at server shutdown); a later call opens it again."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def put(self, stored: StoredResponse) -> None:
        """Save (or replace) a response, then evict the oldest past the bounds; one
        transaction, so readers see all of it or none."""
        body = {"response": stored.response, "items": stored.items}
        self._put("responses", stored.response["id"], body)

    def get(self, response_id: str) -> StoredResponse | None:
        data = self._get("responses", response_id)
        return None if data is None else StoredResponse(data["response"], data["items"])

    def delete(self, response_id: str) -> bool:
        return self._delete("responses", response_id)

    def put_conversation(self, stored: StoredConversation) -> None:
        body = {"conversation": stored.conversation, "items": stored.items}
        self._put("conversations", stored.conversation["id"], body)

    def get_conversation(self, conversation_id: str) -> StoredConversation | None:
        data = self._get("conversations", conversation_id)
        if data is None:
            return None
        return StoredConversation(data["conversation"], data["items"])

    def extend_conversation(self, conversation_id: str, items: list[Json]) -> bool:
        """Append items to a conversation, in one transaction (two turns finishing at once
        both land); False if it is gone."""
        with self._session() as connection, connection:
            row = connection.execute(
                "SELECT body FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                return False
            data = json.loads(row[0])
            data["items"].extend(items)
            self._write(connection, "conversations", conversation_id, data)
        return True

    def delete_conversation(self, conversation_id: str) -> bool:
        return self._delete("conversations", conversation_id)

    # ------------------------------------------------------------------ one table

    def _put(self, table: str, key: str, body: Json) -> None:
        with self._session() as connection, connection:
            self._write(connection, table, key, body)

    def _write(self, connection: sqlite3.Connection, table: str, key: str, body: Json) -> None:
        """Replace the row (it becomes the newest), then evict past the bounds."""
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        connection.execute(
            f"INSERT OR REPLACE INTO {table} (id, bytes, body) VALUES (?, ?, ?)",
            (key, len(text.encode()), text),
        )
        self._evict(connection, table)

    def _evict(self, connection: sqlite3.Connection, table: str) -> None:
        count, total = connection.execute(
            f"SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM {table}"
        ).fetchone()
        if count <= self.max_count and total <= self.max_bytes:
            return
        rows = connection.execute(f"SELECT seq, bytes FROM {table} ORDER BY seq").fetchall()
        cut = None
        for seq, size in rows[:-1]:  # the newest is always kept
            if count <= self.max_count and total <= self.max_bytes:
                break
            count, total, cut = count - 1, total - size, seq
        if cut is not None:
            connection.execute(f"DELETE FROM {table} WHERE seq <= ?", (cut,))

    def _get(self, table: str, key: str) -> Json | None:
        with self._session() as connection:
            row = connection.execute(f"SELECT body FROM {table} WHERE id = ?", (key,)).fetchone()
        if row is None:
            return None
        data: Json = json.loads(row[0])
        return data

    def _delete(self, table: str, key: str) -> bool:
        with self._session() as connection, connection:
            cursor = connection.execute(f"DELETE FROM {table} WHERE id = ?", (key,))
        return cursor.rowcount > 0

    def ids(self) -> list[str]:
        """Every stored id, oldest first (for tests and inspection)."""
        with self._session() as connection:
            rows = connection.execute("SELECT id FROM responses ORDER BY seq").fetchall()
        return [row[0] for row in rows]
