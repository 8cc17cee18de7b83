"""The stored-response store (`server/responses_store.py`): a response and its conversation
round-trip, survive reopening the file (a server restart), are replaced by id, deleted, and
the oldest are evicted past the count and byte bounds (the newest always kept);
conversations grow by appending, and are bounded apart from responses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ollamapy.server.responses_store import ResponseStore, StoredConversation, StoredResponse

USER: Any = [{"type": "message", "role": "user", "content": "hi"}]


def stored(response_id: str, text: str = "hello") -> StoredResponse:
    output = [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    ]
    return StoredResponse({"id": response_id, "object": "response", "output": output}, USER)


def test_a_response_round_trips_with_its_conversation(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path / "responses")
    store.put(stored("resp_1"))
    got = store.get("resp_1")
    assert got == stored("resp_1")
    assert got is not None and got.conversation == [*USER, *got.response["output"]]
    assert store.get("resp_2") is None


def test_responses_survive_reopening_the_store(tmp_path: Path) -> None:
    ResponseStore(tmp_path / "responses").put(stored("resp_1"))
    assert ResponseStore(tmp_path / "responses").get("resp_1") == stored("resp_1")
    assert (tmp_path / "responses" / "responses.sqlite3").is_file()


def test_putting_an_id_again_replaces_it(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    store.put(stored("resp_1", "old"))
    store.put(stored("resp_1", "new"))
    assert store.get("resp_1") == stored("resp_1", "new")
    assert store.ids() == ["resp_1"]


def test_delete_says_whether_there_was_one(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    store.put(stored("resp_1"))
    assert store.delete("resp_1") is True
    assert store.get("resp_1") is None
    assert store.delete("resp_1") is False


def test_the_oldest_are_evicted_past_the_count(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path, max_count=3)
    for n in range(5):
        store.put(stored(f"resp_{n}"))
    assert store.ids() == ["resp_2", "resp_3", "resp_4"]


def test_the_oldest_are_evicted_past_the_byte_bound(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path, max_bytes=1000)
    for n in range(10):
        store.put(stored(f"resp_{n}", "x" * 300))
    kept = store.ids()
    assert kept == [f"resp_{n}" for n in range(10 - len(kept), 10)]  # the newest, in order
    assert 1 <= len(kept) < 10


def test_the_newest_is_kept_even_alone_past_the_byte_bound(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path, max_bytes=10)
    store.put(stored("resp_1"))
    store.put(stored("resp_2"))
    assert store.ids() == ["resp_2"]


def conversation(key: str) -> StoredConversation:
    return StoredConversation({"id": key, "object": "conversation"}, list(USER))


def test_a_conversation_grows_by_appending(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path)
    store.put_conversation(conversation("conv_1"))
    turn: Any = [{"type": "message", "role": "user", "content": "again"}]
    assert store.extend_conversation("conv_1", turn) is True
    got = ResponseStore(tmp_path).get_conversation("conv_1")  # reopened: a restart
    assert got is not None and got.items == [*USER, *turn]
    assert store.extend_conversation("conv_2", turn) is False
    assert store.delete_conversation("conv_1") is True
    assert store.get_conversation("conv_1") is None


def test_conversations_and_responses_are_bounded_apart(tmp_path: Path) -> None:
    store = ResponseStore(tmp_path, max_count=2)
    store.put(stored("resp_1"))
    for n in range(3):
        store.put_conversation(conversation(f"conv_{n}"))
    store.extend_conversation("conv_1", [])  # written last: now the newest
    store.put_conversation(conversation("conv_3"))
    assert store.ids() == ["resp_1"]
    assert store.get_conversation("conv_2") is None and store.get_conversation("conv_0") is None
    assert store.get_conversation("conv_1") is not None
