from __future__ import annotations

from services.slm_worker.textstream import StopFilter, TokenTextDecoder


def _run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    f = StopFilter(stops)
    out = ""
    for p in pieces:
        text, stopped = f.feed(p)
        out += text
        if stopped:
            return out, True
    return out + f.flush(), False


def test_stop_split_across_pieces_is_never_emitted() -> None:
    assert _run(["Hello ", "wor", "ld! END", "more"], ["END"]) == ("Hello world! ", True)
    assert _run(["ab", "<|e", "nd|>", "x"], ["<|end|>"]) == ("ab", True)


def test_partial_stop_prefix_is_released_when_it_diverges() -> None:
    f = StopFilter(["STOP"])
    assert f.feed("a ST") == ("a ", False)
    assert f.feed("AR") == ("STAR", False)


def test_earliest_of_several_stops_wins() -> None:
    assert _run(["one two three"], ["three", "two"]) == ("one ", True)


def test_no_stops_passes_everything_through() -> None:
    assert _run(["a", "b", "c"], []) == ("abc", False)


def test_held_tail_is_flushed_at_end() -> None:
    assert _run(["x\nUs"], ["\nUser:"]) == ("x\nUs", False)


def test_utf8_split_across_tokens() -> None:
    data = "héllo €".encode()
    dec = TokenTextDecoder([])
    out = ""
    for i in range(len(data)):
        text, _ = dec.feed(data[i : i + 1])
        assert "\ufffd" not in text
        out += text
    assert out + dec.flush() == "héllo €"


def test_truncated_utf8_at_end_becomes_replacement_char() -> None:
    dec = TokenTextDecoder([])
    text, _ = dec.feed("a€".encode()[:-1])
    assert text == "a"
    assert dec.flush() == "\ufffd"
