"""The spikeflash wire protocol (docs/protocol.md): framing (:mod:`.codec`), frame types and
payloads (:mod:`.frames`), the reliable link both ends share (:mod:`.link`) and the host
side (:mod:`.session`)."""

from backend.protocol.codec import MAX_PAYLOAD, Frame, FrameDecoder, decode_stream, encode_frame
from backend.protocol.frames import PROTOCOL_VERSION, ErrorCode, FrameType

__all__ = ["MAX_PAYLOAD", "PROTOCOL_VERSION", "ErrorCode", "Frame", "FrameDecoder", "FrameType",
           "decode_stream", "encode_frame"]
