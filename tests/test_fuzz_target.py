"""The atheris fuzz target (fuzz/fuzz_codec.py) holds on a corpus of tricky streams, so the
property it fuzzes is checked on every run even where atheris is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.protocol.codec import encode_frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
from fuzz_codec import check_one_input  # noqa: E402

FRAME = encode_frame(0x05, 7, b"\xc0\xdb\xdb\xc0" * 8)
CORPUS = [
    b"",
    FRAME,
    FRAME[:-3],                       # cut mid-frame
    b"noise" + FRAME + b"\xdb" + FRAME,  # garbage, a bad escape, another frame
    FRAME[:10] + b"\x00" + FRAME[10:],  # an inserted byte
    b"\xc0" * 50,
    b"\xc0\x01\x00\x00\x00\xff\xff\xff\x7f\xc0",  # a huge length field
]


@pytest.mark.parametrize("data", CORPUS, ids=range(len(CORPUS)))
def test_fuzz_target_holds_on_the_corpus(data):
    check_one_input(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from([FRAME, b"\xc0", b"\xdb"])), max_size=6))
def test_fuzz_target_holds_on_mixtures(parts):
    check_one_input(b"".join(parts))
