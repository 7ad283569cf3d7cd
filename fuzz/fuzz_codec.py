"""Coverage-guided fuzzing of the wire-protocol decoder with atheris (a nightly-style job).

    pip install atheris
    python fuzz/fuzz_codec.py -runs=1000000          # libFuzzer options after the script

The property (docs/protocol.md): on arbitrary bytes the decoder raises nothing but
``ProtocolError`` subclasses, every frame it delivers re-encodes to a frame that decodes to the
same frame, and feeding the bytes in two pieces gives the same frames as feeding them at once.
``tests/test_fuzz_target.py`` runs :func:`check_one_input` on a corpus in every ``make test``.
"""

from __future__ import annotations

import sys

from backend.errors import ProtocolError
from backend.protocol.codec import FrameDecoder, decode_stream, encode_frame


def _decode(*pieces: bytes) -> list:
    decoder = FrameDecoder()
    frames = [frame for piece in pieces for frame in decoder.feed(piece)]
    try:
        decoder.finish()
    except ProtocolError:
        pass  # a stream cut mid-frame: the declared error
    return frames


def check_one_input(data: bytes) -> None:
    """Assert the decoder properties for one input; raise AssertionError if one breaks."""
    frames = _decode(data)
    split = len(data) // 2
    assert _decode(data[:split], data[split:]) == frames, "splitting the stream changed the frames"
    for frame in frames:
        again, _ = decode_stream(encode_frame(frame.type, frame.seq, frame.payload, frame.flags))
        assert again == [frame], f"frame {frame.type:#x}/{frame.seq} does not re-encode to itself"


def main() -> None:
    import atheris

    atheris.instrument_all()  # coverage feedback for the codec already imported above
    atheris.Setup(sys.argv, check_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
