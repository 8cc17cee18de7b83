"""The prompt cache beyond the slots, on a fake per-sequence state API: LRU by bytes,
restore, and the disk files (header checks, checksum, bound, lazy reads)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ollamapy.runner.prompt_cache import (
    SUFFIX,
    DiskStore,
    Entry,
    HostCache,
    PromptCache,
    model_identity,
    model_key,
)

BYTES_PER_TOKEN = 10


class FakeState:
    """Sequences as token lists; a state is the tokens packed with padding, so its size
    grows with its length as llama.cpp's does."""

    def __init__(self) -> None:
        self.seqs: dict[int, list[int]] = {}
        self.sets = 0

    def seq_state_get(self, seq: int) -> bytes:
        tokens = self.seqs.get(seq, [])
        return b"".join(struct.pack("<i", t) + b"\0" * (BYTES_PER_TOKEN - 4) for t in tokens)

    def seq_state_set(self, seq: int, data: bytes) -> bool:
        if len(data) % BYTES_PER_TOKEN or self.seqs.get(seq):
            return False
        self.sets += 1
        self.seqs[seq] = [
            struct.unpack_from("<i", data, i)[0] for i in range(0, len(data), BYTES_PER_TOKEN)
        ]
        return True

    def seq_rm(self, seq: int, p0: int, p1: int) -> bool:
        tokens = self.seqs.setdefault(seq, [])
        if p0 < 0:
            tokens.clear()
        else:
            del tokens[p0 : None if p1 < 0 else p1]
        return True


def entry(tokens: range | list[int], size: int) -> Entry:
    return Entry(tuple(tokens), size, data=b"x" * size)


def store_in(directory: Path, *, identity: str = "sha256:aa", budget: int = 1 << 20) -> DiskStore:
    return DiskStore(directory / "kv", identity, "build-1", budget)


# --------------------------------------------------------------------------- host RAM


def test_least_recently_used_entries_go_first_once_over_the_byte_budget() -> None:
    cache = HostCache(budget=1000)
    a, b, c = entry(range(0, 10), 400), entry(range(100, 110), 400), entry(range(200, 210), 400)
    cache.add(a)
    cache.add(b)
    cache.touch(a)  # b is now the least recently used
    cache.add(c)
    assert cache.entries() == [c, a]
    assert cache.used == 800 <= cache.budget


def test_many_small_entries_stay_within_the_budget() -> None:
    cache = HostCache(budget=1000)
    for i in range(50):
        cache.add(entry(range(i * 100, i * 100 + 5), 90 + i))
        assert cache.used <= 1000
    assert cache.used == sum(e.size for e in cache.entries())
    assert [e.tokens[0] for e in cache.entries()][:3] == [4900, 4800, 4700]


def test_an_entry_larger_than_the_whole_budget_is_not_kept() -> None:
    cache = HostCache(budget=100)
    assert not cache.add(entry(range(5), 101))
    assert len(cache) == 0 and cache.used == 0


def test_a_longer_conversation_replaces_its_own_prefix() -> None:
    cache = HostCache(budget=10_000)
    short, long = entry(range(10), 100), entry(range(20), 200)
    cache.add(short)
    cache.add(long)
    assert cache.entries() == [long] and cache.used == 200
    assert not cache.add(entry(range(15), 150))  # covered by `long`
    assert cache.entries() == [long]


def test_best_is_the_entry_sharing_the_longest_prefix() -> None:
    cache = HostCache(budget=10_000)
    a, b = entry([1, 2, 3, 4], 10), entry([1, 2, 9, 9, 9], 10)
    cache.add(a)
    cache.add(b)
    assert cache.best([1, 2, 3, 7]) == (a, 3)
    assert cache.best([1, 2, 9, 9]) == (b, 4)
    assert cache.best([5]) == (None, 0)


def test_file_entries_cost_no_ram_and_never_displace_a_ram_copy() -> None:
    cache = HostCache(budget=100)
    ram = entry(range(10), 100)
    cache.add(ram)
    assert not cache.add(Entry(tuple(range(5)), 10_000, path=Path("x")))
    cache.add(Entry(tuple(range(50, 60)), 10_000, path=Path("y")))
    assert cache.used == 100 and len(cache) == 2


# --------------------------------------------------------------------------- restore


def test_stash_then_restore_cuts_the_sequence_to_the_shared_prefix() -> None:
    state = FakeState()
    cache = PromptCache(state, budget=10_000, min_tokens=4)
    state.seqs[0] = list(range(30))
    cache.stash(0, list(range(30)))
    state.seqs[0] = [99] * 5  # the slot moved on to another conversation
    prompt = [*range(20), 7, 7]
    found, shared = cache.find(prompt)
    assert found is not None and shared == 20 and found.source == "host"
    assert cache.restore(1, found, shared)
    assert state.seqs[1] == list(range(20))
    assert cache.stats.tokens_host == 20 and cache.stats.restored_host == 1


def test_short_caches_are_not_stashed() -> None:
    state = FakeState()
    state.seqs[0] = [1, 2, 3]
    cache = PromptCache(state, budget=10_000, min_tokens=4)
    cache.stash(0, [1, 2, 3])
    assert len(cache.host) == 0


def test_an_entry_llama_cpp_refuses_is_dropped_and_leaves_the_sequence_empty() -> None:
    state = FakeState()
    cache = PromptCache(state, budget=10_000, min_tokens=1)
    bad = Entry((1, 2, 3), 7, data=b"1234567")  # not a whole number of tokens
    cache.host.add(bad)
    state.seqs[0] = [5, 5]
    assert not cache.restore(0, bad, 3)
    assert state.seqs[0] == [] and len(cache.host) == 0


# --------------------------------------------------------------------------- disk


def persisted(tmp_path: Path, conversations: dict[int, list[int]], **store: object) -> DiskStore:
    """A runner that served `conversations` (seq -> tokens) and was then unloaded."""
    disk = store_in(tmp_path, **store)  # type: ignore[arg-type]
    state = FakeState()
    state.seqs.update(conversations)
    cache = PromptCache(state, budget=1 << 20, store=disk, min_tokens=4)
    cache.persist(conversations.items())
    return disk


def test_a_saved_prefix_is_restored_from_disk_by_the_next_runner(tmp_path: Path) -> None:
    persisted(tmp_path, {0: list(range(40))})
    state = FakeState()
    cache = PromptCache(state, budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    found, shared = cache.find([*range(30), 5])
    assert found is not None and found.source == "disk" and shared == 30
    assert state.sets == 0  # listed at load, read only when a prompt needs it
    assert cache.restore(0, found, shared)
    assert state.seqs[0] == list(range(30)) and cache.stats.tokens_disk == 30


def test_a_corrupted_file_is_removed_and_never_loaded(tmp_path: Path) -> None:
    persisted(tmp_path, {0: list(range(40))})
    (path,) = (tmp_path / "kv").glob(f"*{SUFFIX}")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # one flipped bit in the KV data: the header still reads fine
    path.write_bytes(bytes(raw))
    state = FakeState()
    cache = PromptCache(state, budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    found, shared = cache.find(list(range(40)))
    assert found is not None  # the header is intact, so it is listed...
    assert not cache.restore(0, found, shared)  # ...but the checksum refuses it
    assert state.sets == 0 and not path.exists() and len(cache.host) == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[:40], id="truncated"),
        pytest.param(lambda raw: b"garbage" + raw, id="bad-magic"),
        pytest.param(lambda raw: raw.replace(b'"n_tokens": 40', b'"n_tokens": 4e'), id="header"),
    ],
)
def test_an_unreadable_file_is_removed_at_load(tmp_path: Path, damage: object) -> None:
    persisted(tmp_path, {0: list(range(40))})
    (path,) = (tmp_path / "kv").glob(f"*{SUFFIX}")
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    cache = PromptCache(FakeState(), budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    assert len(cache.host) == 0 and not path.exists()


def test_a_file_from_another_model_or_build_is_removed(tmp_path: Path) -> None:
    persisted(tmp_path, {0: list(range(40))}, identity="sha256:bb")
    cache = PromptCache(FakeState(), budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    assert len(cache.host) == 0 and not list((tmp_path / "kv").iterdir())
    persisted(tmp_path, {0: list(range(40))})
    other_build = DiskStore(tmp_path / "kv", "sha256:aa", "build-2", 1 << 20)
    cache = PromptCache(FakeState(), budget=1 << 20, store=other_build, min_tokens=4)
    assert len(cache.host) == 0 and not list((tmp_path / "kv").iterdir())


def test_saving_keeps_the_most_recent_slots_within_the_disk_budget(tmp_path: Path) -> None:
    one = 40 * (BYTES_PER_TOKEN + 4)  # the state plus the token list
    conversations = {seq: list(range(seq * 100, seq * 100 + 40)) for seq in range(3)}
    persisted(tmp_path, conversations, budget=2 * one)  # seq 0 and 1 are the most recent
    cache = PromptCache(FakeState(), budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    assert sorted(e.tokens[0] for e in cache.host.entries()) == [0, 100]


def test_a_second_unload_keeps_files_still_wanted_and_drops_the_rest(tmp_path: Path) -> None:
    persisted(tmp_path, {0: list(range(40)), 1: list(range(500, 540))})
    state = FakeState()
    cache = PromptCache(state, budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    state.seqs[0] = list(range(60))  # the first conversation went on; it covers the file
    cache.persist([(0, state.seqs[0])])
    again = PromptCache(FakeState(), budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    assert sorted(len(e.tokens) for e in again.host.entries()) == [40, 60]
    assert [e.tokens[:1] for e in again.host.entries()].count((0,)) == 1


def test_models_get_their_own_folder(tmp_path: Path) -> None:
    blob = tmp_path / ("sha256-" + "ab" * 32)
    blob.write_bytes(b"gguf")
    identity = model_identity(str(blob), kv_cache_type=None, flash=None)
    assert identity.startswith("sha256:" + "ab" * 32)
    other = model_identity(str(blob), kv_cache_type="q8_0", flash=None)
    assert model_key(identity) != model_key(other)


def test_only_the_text_before_an_image_is_kept(tmp_path: Path) -> None:
    """Image positions are per-process ids: a cached prefix never matches on them."""
    state = FakeState()
    cache = PromptCache(state, budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    with_image = [*range(10), -1, -2, -3, 50, 51]
    state.seqs[0] = [*range(10), 0, 0, 0, 50, 51]  # the KV holds the image's positions
    cache.stash(0, with_image)
    found, shared = cache.find(with_image)
    assert found is not None and found.tokens == tuple(range(10)) and shared == 10
    assert cache.restore(1, found, shared) and state.seqs[1] == list(range(10))
    cache.persist([(0, with_image)])
    again = PromptCache(FakeState(), budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    assert [e.tokens for e in again.host.entries()] == [tuple(range(10))]


def test_an_unchanged_prefix_is_not_written_again(tmp_path: Path) -> None:
    persisted(tmp_path, {0: list(range(40))})
    (path,) = (tmp_path / "kv").glob(f"*{SUFFIX}")
    before = path.stat().st_mtime_ns, path.stat().st_ino
    state = FakeState()
    cache = PromptCache(state, budget=1 << 20, store=store_in(tmp_path), min_tokens=4)
    found, shared = cache.find(list(range(40)))
    assert found is not None and cache.restore(0, found, shared)
    state.seqs[0] = list(range(40))
    assert cache.persist([(0, state.seqs[0])]) == 0
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
