"""The configuration image: the canonical binary form of a ChipConfig that the wire carries
(docs/protocol.md, "The configuration image").

All integers little-endian. A 36-byte header, then one section per configured core in
ascending core id, then the DVS stage, then the readout layer, when present; each section is an 8-byte section header
(kind u8, version u8, id u16, body length u32) and a body padded with zeros to a multiple of
4 bytes. A device applies the image by walking it once and stores it verbatim for read-back;
the digest is SHA-256 over the image bytes. :func:`decode_image` accepts only canonical
images (reserved bytes and padding zero, sections in order, nothing after the last), so
``encode_image(decode_image(b)) == b`` for every image it accepts.
"""

from __future__ import annotations

import hashlib
import struct
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from backend.errors import ConfigImageError
from snnlib.network import DVS_LAYER_ID, Destination
from snnlib.readout import READOUT_LAYER_ID, Readout

if TYPE_CHECKING:
    from mapper import ChipConfig, CoreConfig, DVSConfig

IMAGE_MAGIC = b"SPKI"
#: the image format this module writes and reads
IMAGE_FORMAT = 1
HEADER = struct.Struct("<4sHHIHHI16s")  # magic, format, header size, image size, sections, 0, period, chip
SECTION = struct.Struct("<BBHI")  # kind, version, id, body length
CORE_HEAD = struct.Struct("<HHHHBBBBBBBBhh")  # f c h w k sy sx py px flags n_dest 0 thr_high thr_low
DVS_HEAD = struct.Struct("<BBHHBBHHHHBB")  # polarities flags h w pool_y pool_x oy ox cut_y cut_x n_dest 0
DEST = struct.Struct("<HHBB")  # layer, feature_shift, pooling, 0
READOUT_BODY = struct.Struct("<HBB")  # threshold, moving-average length, channel stride
NAMES = struct.Struct("<dH")  # scale, number of layer names
NAME_LEN = struct.Struct("<H")
#: the version of each section kind this module writes and reads
SECTION_VERSION = 1


class SectionKind(IntEnum):
    """Section kinds, in the order an image holds them."""

    CORE = 1
    DVS = 2
    READOUT = 3


class CoreFlags(IntEnum):
    RESET_TO_ZERO = 1
    LEAK_ENABLE = 2
    MONITOR = 4
    BIAS = 8
    INITIAL_STATE = 16


class DVSFlags(IntEnum):
    MERGE_POLARITIES = 1
    ON_CHANNEL = 2
    OFF_CHANNEL = 4
    MIRROR_X = 8
    MIRROR_Y = 16
    MIRROR_DIAGONAL = 32
    MONITOR = 64
    CUT = 128


def image_digest(image: bytes) -> str:
    """SHA-256 hex digest of an image (what a device reports for what it applied)."""
    return hashlib.sha256(image).hexdigest()


# -- encoding -----------------------------------------------------------------------------
def encode_image(config: ChipConfig) -> bytes:
    """The image of ``config`` (bytes). Raises :class:`ConfigImageError` naming the field
    whose value does not fit its image field (e.g. a chip name over 16 bytes)."""
    sections = [_section(SectionKind.CORE, cid, _core_body(cid, core))
                for cid, core in sorted(config.cores.items())]
    if config.dvs is not None:
        sections.append(_section(SectionKind.DVS, DVS_LAYER_ID, _dvs_body(config.dvs)))
    if config.readout is not None:
        r = config.readout
        sections.append(_section(SectionKind.READOUT, READOUT_LAYER_ID, READOUT_BODY.pack(
            _fit("readout.threshold", r.threshold, 0, 0xFFFF), _fit("readout.average", r.average, 0, 0xFF),
            _fit("readout.channel_stride", r.channel_stride, 0, 0xFF))))
    chip = config.chip.encode()
    if len(chip) > 16 or b"\0" in chip:
        raise ConfigImageError(f"chip = {config.chip!r}: the image holds a chip name of at most 16 "
                               "bytes without NUL")
    period = _fit("slow_clock_period_us", config.slow_clock_period_us or 0, 0, 2**32 - 1)
    body = b"".join(sections)
    head = HEADER.pack(IMAGE_MAGIC, IMAGE_FORMAT, HEADER.size, HEADER.size + len(body), len(sections),
                       0, period, chip)
    return head + body


def _fit(where: str, value, lo: int, hi: int) -> int:
    value = int(value)
    if not lo <= value <= hi:
        raise ConfigImageError(f"{where} = {value}: the image field holds {lo}..{hi}")
    return value


def _section(kind: SectionKind, sid: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return SECTION.pack(kind, SECTION_VERSION, _fit("core id", sid, 0, 0xFFFF), len(body)) + body


def _dests(where: str, dests: list[Destination]) -> bytes:
    return b"".join(DEST.pack(_fit(f"{where}.destinations.{i}.layer", d.layer, 0, 0xFFFF),
                              _fit(f"{where}.destinations.{i}.feature_shift", d.feature_shift, 0, 0xFFFF),
                              _fit(f"{where}.destinations.{i}.pooling", d.pooling, 0, 0xFF), 0)
                    for i, d in enumerate(dests))


def _core_body(cid: int, core: CoreConfig) -> bytes:
    where = f"cores.{cid}"
    f, c, k, _ = np.shape(core.weights)
    flags = ((core.reset == "zero") * CoreFlags.RESET_TO_ZERO | bool(core.leak_enable) * CoreFlags.LEAK_ENABLE
             | bool(core.monitor) * CoreFlags.MONITOR | (core.bias is not None) * CoreFlags.BIAS
             | (core.initial_state is not None) * CoreFlags.INITIAL_STATE)
    u8 = [_fit(f"{where}.{name}", v, 0, 0xFF) for name, v in
          (("kernel", k), ("stride", core.stride[0]), ("stride", core.stride[1]),
           ("padding", core.padding[0]), ("padding", core.padding[1]),
           ("destinations", len(core.destinations)))]
    u16 = [_fit(f"{where}.input_shape", v, 0, 0xFFFF) for v in (f, *core.input_shape)]
    parts = [CORE_HEAD.pack(*u16, *u8[:5], int(flags), u8[5], 0, int(core.threshold_high),
                            int(core.threshold_low)),
             _dests(where, core.destinations),
             np.ascontiguousarray(core.weights, "i1").tobytes()]
    parts.append(bytes(len(parts[-1]) % 2))
    for array in (core.bias, core.initial_state):
        if array is not None:
            parts.append(np.ascontiguousarray(array, "<i2").tobytes())
    names = [n.encode() for n in core.layer_names]
    parts.append(NAMES.pack(float(core.scale), _fit(f"{where}.layer_names", len(names), 0, 0xFFFF)))
    for i, name in enumerate(names):
        parts.append(NAME_LEN.pack(_fit(f"{where}.layer_names.{i}", len(name), 0, 0xFFFF)) + name)
    return b"".join(parts)


def _dvs_body(dvs: DVSConfig) -> bytes:
    flags = 0
    for bit, on in ((DVSFlags.MERGE_POLARITIES, dvs.merge_polarities), (DVSFlags.ON_CHANNEL, dvs.on_channel),
                    (DVSFlags.OFF_CHANNEL, dvs.off_channel), (DVSFlags.MIRROR_X, dvs.mirror_x),
                    (DVSFlags.MIRROR_Y, dvs.mirror_y), (DVSFlags.MIRROR_DIAGONAL, dvs.mirror_diagonal),
                    (DVSFlags.MONITOR, dvs.monitor), (DVSFlags.CUT, dvs.cut is not None)):
        flags |= bit if on else 0
    cut = dvs.cut if dvs.cut is not None else (0, 0)
    u16 = [_fit("dvs", v, 0, 0xFFFF) for v in (*dvs.input_shape[1:], *dvs.origin, *cut)]
    return DVS_HEAD.pack(_fit("dvs.input_shape", dvs.input_shape[0], 0, 0xFF), flags, u16[0], u16[1],
                         _fit("dvs.pooling", dvs.pooling[0], 0, 0xFF),
                         _fit("dvs.pooling", dvs.pooling[1], 0, 0xFF), *u16[2:],
                         _fit("dvs.destinations", len(dvs.destinations), 0, 0xFF), 0
                         ) + _dests("dvs", dvs.destinations)


# -- decoding -----------------------------------------------------------------------------
class _Walker:
    """Reads fields in order from an image, raising ConfigImageError with the byte offset."""

    def __init__(self, data: bytes):
        self.data, self.pos = bytes(data), 0

    def fail(self, message: str) -> ConfigImageError:
        return ConfigImageError(f"configuration image, byte {self.pos}: {message}",
                                hint="send an image made by backend.protocol.config_image.encode_image")

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"{what} needs {n} bytes, {len(self.data) - self.pos} are left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, layout: struct.Struct, what: str) -> tuple:
        return layout.unpack(self.take(layout.size, what))

    def array(self, dtype: str, shape: tuple, what: str) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(self.take(n, what), dtype).reshape(shape).astype(dtype[-2:])

    def zeros(self, n: int, what: str) -> None:
        start = self.pos
        if any(self.take(n, what)):
            self.pos = start
            raise self.fail(f"{what} must be zero")


def decode_image(image: bytes) -> ChipConfig:
    """The :class:`mapper.ChipConfig` an image describes, validated against its chip spec
    (:class:`mapper.ConfigError` if the chip cannot run it). Raises :class:`ConfigImageError`
    naming the byte offset for bytes that are not a canonical image of format 1."""
    from mapper import ChipConfig

    r = _Walker(image)
    magic, fmt, head_size, size, n_sections, reserved, period, chip = r.unpack(HEADER, "the header")
    if magic != IMAGE_MAGIC:
        raise r.fail(f"magic {magic!r}; an image starts with {IMAGE_MAGIC!r}")
    if fmt != IMAGE_FORMAT or head_size != HEADER.size:
        raise r.fail(f"image format {fmt} with a {head_size}-byte header; this reader takes format "
                     f"{IMAGE_FORMAT} with a {HEADER.size}-byte header")
    if size != len(image):
        raise r.fail(f"the header says {size} bytes, the image has {len(image)}")
    name = chip.rstrip(b"\0")
    if reserved or b"\0" in name or not name:
        raise r.fail(f"reserved = {reserved}, chip = {chip!r}: expected 0 and a NUL-padded name")
    try:
        chip_name = name.decode()
    except UnicodeDecodeError as exc:
        raise r.fail(f"chip name {chip!r} is not UTF-8") from exc
    cores, dvs, readout, last, last_kind = {}, None, None, -1, 0
    for _ in range(n_sections):
        kind, version, sid, length = r.unpack(SECTION, "a section header")
        end = r.pos + length
        if kind not in tuple(SectionKind):
            raise r.fail(f"section kind {kind}: format {IMAGE_FORMAT} has kinds 1 (core), 2 (DVS) and 3 (readout)")
        if version != SECTION_VERSION or length % 4 or kind < last_kind or (
                kind == last_kind and (kind != SectionKind.CORE or sid <= last)):
            raise r.fail(f"section (kind {kind}, version {version}, id {sid}, length {length}): expected "
                         f"version {SECTION_VERSION}, a length multiple of 4, cores in ascending id, "
                         "then one DVS section, then one readout section")
        last_kind = kind
        if kind == SectionKind.CORE:
            cores[sid], last = _read_core(r, f"core {sid}"), sid
        elif kind == SectionKind.DVS and sid != DVS_LAYER_ID:
            raise r.fail(f"DVS section id {sid}; expected {DVS_LAYER_ID}")
        elif kind == SectionKind.DVS:
            dvs = _read_dvs(r)
        elif sid != READOUT_LAYER_ID:
            raise r.fail(f"readout section id {sid}; expected {READOUT_LAYER_ID}")
        else:
            readout = Readout(*r.unpack(READOUT_BODY, "the readout section"))
        if r.pos > end:
            raise r.fail(f"section id {sid} runs past its length {length}")
        r.zeros(end - r.pos, f"padding of section {sid}")
    if r.pos != len(image):
        raise r.fail(f"{len(image) - r.pos} bytes after the last section")
    return ChipConfig(chip_name, cores, dvs, period or None, readout=readout).validate()


def _read_dests(r: _Walker, n: int, what: str) -> list[Destination]:
    out = []
    for i in range(n):
        layer, shift, pooling, zero = r.unpack(DEST, f"{what} destination {i}")
        if zero or not pooling:
            raise r.fail(f"{what} destination {i}: pooling {pooling}, reserved byte {zero}; expected "
                         "a pooling >= 1 and 0")
        out.append(Destination(layer, pooling, shift))
    return out


def _read_core(r: _Walker, what: str) -> CoreConfig:
    from mapper import CoreConfig

    f, c, h, w, k, sy, sx, py, px, flags, n_dest, zero, high, low = r.unpack(CORE_HEAD, f"{what} header")
    if zero or flags >= 32:
        raise r.fail(f"{what}: flags {flags:#x}, reserved byte {zero}; expected flags below 0x20 and 0")
    if min(f, c, h, w, k, sy, sx) < 1 or min(h + 2 * py, w + 2 * px) < k:
        raise r.fail(f"{what}: f {f}, c {c}, h {h}, w {w}, kernel {k}, stride ({sy}, {sx}) must be >= 1 "
                     f"and the kernel must fit the padded input")
    dests = _read_dests(r, n_dest, what)
    weights = r.array("i1", (f, c, k, k), f"{what} weights")
    r.zeros((f * c * k * k) % 2, f"{what} padding after the weights")
    core = CoreConfig(weights, (c, h, w), high, low, (sy, sx), (py, px),
                      "zero" if flags & CoreFlags.RESET_TO_ZERO else "subtract",
                      leak_enable=bool(flags & CoreFlags.LEAK_ENABLE), destinations=dests,
                      monitor=bool(flags & CoreFlags.MONITOR))
    if flags & CoreFlags.BIAS:
        core.bias = r.array("<i2", (f,), f"{what} bias")
    if flags & CoreFlags.INITIAL_STATE:
        core.initial_state = r.array("<i2", core.output_shape, f"{what} initial state")
    core.scale, n_names = r.unpack(NAMES, f"{what} scale and names")
    if not core.scale > 0:
        raise r.fail(f"{what}: scale = {core.scale}; expected a positive number")
    for i in range(n_names):
        (n,) = r.unpack(NAME_LEN, f"{what} layer name {i}")
        try:
            core.layer_names.append(r.take(n, f"{what} layer name {i}").decode())
        except UnicodeDecodeError as exc:
            raise r.fail(f"{what} layer name {i} is not UTF-8 ({exc})") from exc
    return core


def _read_dvs(r: _Walker) -> DVSConfig:
    from mapper import DVSConfig

    pol, flags, h, w, pool_y, pool_x, oy, ox, cy, cx, n_dest, zero = r.unpack(DVS_HEAD, "DVS header")
    has_cut = bool(flags & DVSFlags.CUT)
    if zero or (not has_cut and (cy or cx)) or min(pol, h, w, pool_y, pool_x) < 1:
        raise r.fail(f"DVS: reserved byte {zero}, cut ({cy}, {cx}) without the cut flag, polarities "
                     f"{pol}, size {h}x{w}, pooling ({pool_y}, {pool_x}); expected zeros and sizes >= 1")
    return DVSConfig((pol, h, w), bool(flags & DVSFlags.MERGE_POLARITIES), bool(flags & DVSFlags.ON_CHANNEL),
                     bool(flags & DVSFlags.OFF_CHANNEL), (pool_y, pool_x), (oy, ox),
                     (cy, cx) if has_cut else None, bool(flags & DVSFlags.MIRROR_X),
                     bool(flags & DVSFlags.MIRROR_Y), bool(flags & DVSFlags.MIRROR_DIAGONAL),
                     _read_dests(r, n_dest, "DVS"), bool(flags & DVSFlags.MONITOR))
