"""Stop-string matching and incremental UTF-8 decoding across token boundaries."""

from __future__ import annotations

import pytest

from ollamapy.runner.textstream import StopMatcher, TraceLimit, Utf8Decoder


def run_matcher(stops: list[str], pieces: list[str]) -> tuple[list[str], bool, str]:
    """Feed pieces until a stop; return (emitted per piece, stopped, flushed remainder)."""
    matcher = StopMatcher(stops)
    emitted: list[str] = []
    for piece in pieces:
        out, stopped = matcher.feed(piece)
        emitted.append(out)
        if stopped:
            return emitted, True, ""
    return emitted, False, matcher.flush()


@pytest.mark.parametrize(
    ("stops", "pieces", "emitted", "stopped", "rest"),
    [
        # no stop strings: everything passes straight through
        ([], ["a", "b"], ["a", "b"], False, ""),
        # stop inside one piece: text before it is emitted, the stop never is
        (["END"], ["abcENDxyz"], ["abc"], True, ""),
        # stop split across pieces: the prefix is held back, then dropped
        (["END"], ["ab", "cE", "N", "D!"], ["ab", "c", "", ""], True, ""),
        # a held prefix that turns out not to be a stop is released
        (["END"], ["xE", "Nx"], ["x", "ENx"], False, ""),
        # held prefix released at the end of generation
        (["END"], ["ab", "EN"], ["ab", ""], False, "EN"),
        # several stops: the earliest occurrence wins
        (["bar", "foo"], ["xxfoo bar"], ["xx"], True, ""),
        (["###", "\n\n"], ["line", "\n", "\n"], ["line", "", ""], True, ""),
        # stop at the very start
        (["<|end|>"], ["<|", "end|>", "more"], ["", ""], True, ""),
        # overlapping candidates: the longest possible prefix is held
        (["aab"], ["a", "a", "a", "b"], ["", "", "a", ""], True, ""),
        # empty stop strings are ignored
        ([""], ["abc"], ["abc"], False, ""),
    ],
)
def test_stop_matcher(
    stops: list[str], pieces: list[str], emitted: list[str], stopped: bool, rest: str
) -> None:
    assert run_matcher(stops, pieces) == (emitted, stopped, rest)


@pytest.mark.parametrize(
    ("stops", "pieces", "matched"),
    [
        (["END", "STOP"], ["abSTOPcd"], "STOP"),
        (["bar", "foo"], ["xxfoo bar"], "foo"),  # the earliest occurrence is the one
        (["END"], ["ab", "EN", "D"], "END"),  # split across pieces
        (["END"], ["no stop here"], None),
    ],
)
def test_stop_matcher_says_which_stop_string_matched(
    stops: list[str], pieces: list[str], matched: str | None
) -> None:
    matcher = StopMatcher(stops)
    for piece in pieces:
        if matcher.feed(piece)[1]:
            break
    assert matcher.matched == matched


def test_stop_matcher_never_emits_stop_text() -> None:
    text = "The answer is 42. User: next question"
    for split in range(1, len(text)):
        pieces = [text[:split], text[split:]]
        emitted, stopped, rest = run_matcher(["User:"], pieces)
        assert stopped
        assert "".join(emitted) + rest == "The answer is 42. "


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"hello", b" world"], ["hello", " world"]),
        # a 4-byte emoji split over three tokens comes out whole, once
        (["😀".encode()[:1], "😀".encode()[1:3], "😀".encode()[3:] + b"!"], ["", "", "😀!"]),
        # a 2-byte character split in two
        (["é".encode()[:1], "é".encode()[1:]], ["", "é"]),
        # invalid bytes are replaced, not raised
        ([b"a\xffb"], ["a\ufffdb"]),
    ],
)
def test_utf8_decoder(chunks: list[bytes], expected: list[str]) -> None:
    decoder = Utf8Decoder()
    assert [decoder.feed(chunk) for chunk in chunks] == expected
    assert decoder.flush() == ""


def test_utf8_decoder_flushes_incomplete_tail_as_replacement() -> None:
    decoder = Utf8Decoder()
    assert decoder.feed("😀".encode()[:2]) == ""
    assert decoder.flush() == "\ufffd"


@pytest.mark.parametrize(
    ("opened", "pieces", "spent_at", "count"),
    [
        # the template opened the trace: every token counts; the 3rd spends a budget of 3
        (True, ["a", "b", "c", "d"], 2, 3),
        # the model opens it: the opening tag's token is not counted
        (False, ["\n", "<th", "ink>", "a", "b", "c"], 5, 3),
        # a trace that closes within the budget is never cut
        (False, ["<think>", "a", "</think>", "x", "y", "z"], None, 2),
        (True, ["a", "</th", "ink>", "x", "y"], None, 3),
        # output that does not open a trace has none to limit
        (False, ["Hello", "a", "b", "c"], None, 0),
    ],
    ids=["opened", "opens", "closes-in-time", "closes-split", "no-trace"],
)
def test_trace_limit(opened: bool, pieces: list[str], spent_at: int | None, count: int) -> None:
    limit = TraceLimit(3, "<think>", "</think>", opened=opened)
    spent = [i for i, piece in enumerate(pieces) if limit.feed(piece)]
    assert spent == ([] if spent_at is None else [spent_at])
    assert limit.count == count
