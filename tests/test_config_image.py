"""The configuration image (backend/protocol/config_image.py, docs/protocol.md): every ChipConfig
round-trips through it exactly, the decoded config runs bit-exact, and only canonical images
are accepted."""

from __future__ import annotations

import dataclasses
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import ConfigImageError
from backend.testing.qualification import qualification_config
from backend.protocol.config_image import HEADER, SECTION, decode_image, encode_image, image_digest
from mapper import ChipConfig, ConfigError, map_model
from snnlib import DVS_LAYER_ID, Destination, IntegerNetwork, Readout, simulate
from test_engine import event_streams, networks
from test_mapper_behaviour import random_events, random_model

BAD_IMAGE = (ConfigImageError, ConfigError)


@st.composite
def chip_configs(draw):
    """Random speck2f configs: the engine tests' random networks (DAGs, DVS, bias, leak,
    initial states, both resets) on random cores, with random layer names and scales."""
    net = draw(networks())
    cores = draw(st.permutations(range(9)))
    new_id = {lid: cores[i] for i, lid in enumerate(sorted(net.layers))}
    layers = {}
    for lid, layer in net.layers.items():
        layer = dataclasses.replace(layer, threshold_low=layer.threshold_low or -1, destinations=[
            Destination(new_id[d.layer], d.pooling, d.feature_shift) for d in layer.destinations])
        layers[new_id[lid]] = layer
    if net.dvs is not None:
        net.dvs.destinations = [Destination(new_id[d.layer], d.pooling, d.feature_shift)
                                for d in net.dvs.destinations]
    config = ChipConfig.from_network(IntegerNetwork(layers, net.dvs, net.slow_clock_period_us))
    for core in config.cores.values():
        core.layer_names = draw(st.lists(st.text(max_size=6), max_size=3))
        core.scale = draw(st.floats(1e-6, 1e6))
    return config


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=chip_configs(), data=st.data())
def test_every_config_round_trips_and_runs_bit_exact(config, data):
    image = encode_image(config)
    decoded = decode_image(image)
    assert decoded == config and encode_image(decoded) == image
    assert decoded.to_json() == config.to_json()
    events = data.draw(event_streams(config.to_network()))
    expected = simulate(config.to_network(), events)
    got = simulate(decoded.to_network(), events)
    assert got.events.tobytes() == expected.events.tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_mapped_models_round_trip_and_run_bit_exact(seed):
    rng = np.random.default_rng(seed)
    model, shape = random_model(rng)
    result = map_model(model, shape, monitor="all", dvs=seed % 2 == 1)
    image = encode_image(result.config)
    decoded = decode_image(image)
    assert decoded == result.config and encode_image(decoded) == image
    config = result.config
    layer, shape = ((DVS_LAYER_ID, config.dvs.input_shape) if config.dvs is not None
                    else (result.input_cores[0], shape))
    events = random_events(rng, shape, layer=layer)
    assert (simulate(decoded.to_network(), events).events.tobytes()
            == simulate(result.config.to_network(), events).events.tobytes())


def _small() -> ChipConfig:
    rng = np.random.default_rng(1)
    model, shape = random_model(rng)
    return map_model(model, shape, slow_clock_period_us=1000).config


def test_every_truncation_and_extension_is_refused():
    image = encode_image(_small())
    for n in range(len(image)):
        with pytest.raises(ConfigImageError):
            decode_image(image[:n])
    with pytest.raises(ConfigImageError, match="header says"):
        decode_image(image + bytes(4))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_changed_byte_is_refused_or_decodes_to_a_config_that_reencodes_to_it(data):
    """Canonical: no two images describe one config."""
    image = bytearray(encode_image(_SMALL))
    i = data.draw(st.integers(0, len(image) - 1))
    image[i] ^= data.draw(st.integers(1, 255))
    try:
        config = decode_image(bytes(image))
    except BAD_IMAGE:
        return
    assert encode_image(config) == bytes(image)


_SMALL = _small()


def test_misplaced_readout_section_and_unknown_versions_are_refused():
    image = encode_image(_SMALL)
    first = HEADER.size
    for offset, value, match in ((first, 3, "readout"), (first + 1, 2, "version"),
                                 (4, 2, "format"), (14, 1, "reserved")):
        bad = bytearray(image)
        bad[offset] = value
        with pytest.raises(ConfigImageError, match=match):
            decode_image(bytes(bad))


def _split(image: bytes) -> tuple[tuple, list[bytes]]:
    """The header's fields and the sections (each its SECTION header and body) of an image."""
    head, sections, pos = HEADER.unpack_from(image), [], HEADER.size
    for _ in range(head[4]):
        end = pos + SECTION.size + SECTION.unpack_from(image, pos)[3]
        sections.append(image[pos:end])
        pos = end
    return head, sections


def _join(head: tuple, sections: list[bytes]) -> bytes:
    """An image of ``sections`` under ``head``, its size and section count made to match."""
    body = b"".join(sections)
    return HEADER.pack(*head[:3], HEADER.size + len(body), len(sections), *head[5:]) + body


@pytest.mark.parametrize("name, order", [("pooled_chain", [1, 0]), ("pooled_chain", [0, 0, 1]),
                                         ("dvs_input", [0, 1, 1])])
def test_sections_out_of_their_order_or_repeated_are_refused(name, order):
    """Cores in ascending id, then one DVS section (docs/protocol.md): swapped cores, a core
    twice or two DVS sections would be a second image of one config, and are refused."""
    head, sections = _split(encode_image(qualification_config(name)))
    assert _join(head, sections) == encode_image(qualification_config(name))
    with pytest.raises(ConfigImageError, match="cores in ascending id, then one DVS section"):
        decode_image(_join(head, [sections[i] for i in order]))


def test_header_fields_and_digest():
    config = _SMALL
    image = encode_image(config)
    magic, fmt, head, size, n_sections, _, period, chip = HEADER.unpack_from(image)
    assert (magic, fmt, head, size, period, chip) == (b"SPKI", 1, 36, len(image), 1000,
                                                      b"speck2f".ljust(16, b"\0"))
    assert n_sections == len(config.cores)
    kind, version, core_id, length = SECTION.unpack_from(image, HEADER.size)
    assert (kind, version, core_id) == (1, 1, min(config.cores)) and length % 4 == 0
    assert image_digest(image) == __import__("hashlib").sha256(image).hexdigest()


def test_values_that_do_not_fit_their_field_are_named():
    config = ChipConfig.from_json(_SMALL.to_json())
    config.chip = "a-chip-name-longer-than-16"
    with pytest.raises(ConfigImageError, match="chip"):
        encode_image(config)
    config = ChipConfig.from_json(_SMALL.to_json())
    config.slow_clock_period_us = 2**32
    with pytest.raises(ConfigImageError, match="slow_clock_period_us"):
        encode_image(config)
    config = ChipConfig.from_json(_SMALL.to_json())
    core = min(config.cores)
    c, _, w = config.cores[core].input_shape
    config.cores[core].input_shape = (c, 65536, w)  # one past the u16 field
    with pytest.raises(ConfigImageError, match=rf"cores\.{core}\.input_shape = 65536: .* 0\.\.65535"):
        encode_image(config)


def _set(obj, name: str, index: int | None = None):
    """A setter of ``obj.name`` (or of its item ``index``, a tuple's) to a value."""
    def setter(config, value):
        target = obj(config)
        if index is None:
            setattr(target, name, value)
        else:
            items = list(getattr(target, name))
            items[index] = value
            setattr(target, name, type(getattr(target, name))(items))
    return setter


_CORE, _DVS = (lambda c: c.cores[3]), (lambda c: c.dvs)
_CORE_DEST, _DVS_DEST = (lambda c: c.cores[3].destinations[0]), (lambda c: c.dvs.destinations[0])
#: every integer the image holds in a field of its own: (its name in messages, its field's
#: highest value, a setter on the dvs_input config with a readout and a core destination);
#: the lowest is 0 for each, and -1 is refused where a config can hold it (not a count)
IMAGE_FIELDS = [
    ("slow_clock_period_us", 2**32 - 1, _set(lambda c: c, "slow_clock_period_us")),
    ("core id", 0xFFFF, lambda c, v: c.cores.__setitem__(v, c.cores.pop(3))),
    *[("cores.3.input_shape", 0xFFFF, _set(_CORE, "input_shape", i)) for i in range(3)],
    *[("cores.3.stride", 0xFF, _set(_CORE, "stride", i)) for i in range(2)],
    *[("cores.3.padding", 0xFF, _set(_CORE, "padding", i)) for i in range(2)],
    ("cores.3.destinations.0.layer", 0xFFFF, _set(_CORE_DEST, "layer")),
    ("cores.3.destinations.0.feature_shift", 0xFFFF, _set(_CORE_DEST, "feature_shift")),
    ("cores.3.destinations.0.pooling", 0xFF, _set(_CORE_DEST, "pooling")),
    ("dvs.input_shape", 0xFF, _set(_DVS, "input_shape", 0)),
    *[("dvs", 0xFFFF, _set(_DVS, name, i)) for name in ("input_shape", "origin", "cut") for i in range(2)
      if (name, i) != ("input_shape", 0)],
    *[("dvs.pooling", 0xFF, _set(_DVS, "pooling", i)) for i in range(2)],
    ("dvs.destinations.0.layer", 0xFFFF, _set(_DVS_DEST, "layer")),
    ("dvs.destinations.0.feature_shift", 0xFFFF, _set(_DVS_DEST, "feature_shift")),
    ("dvs.destinations.0.pooling", 0xFF, _set(_DVS_DEST, "pooling")),
    ("readout.threshold", 0xFFFF, _set(lambda c: c.readout, "threshold")),
    ("readout.average", 0xFF, _set(lambda c: c.readout, "average")),
    ("readout.channel_stride", 0xFF, _set(lambda c: c.readout, "channel_stride")),
]
IMAGE_COUNTS = [
    ("cores.3.kernel", 0xFF, lambda c, v: setattr(c.cores[3], "weights", np.zeros((1, 1, v, 1), np.int8))),
    ("cores.3.input_shape", 0xFFFF, lambda c, v: setattr(c.cores[3], "weights", np.zeros((v, 1, 1, 1), np.int8))),
    ("cores.3.destinations", 0xFF, lambda c, v: setattr(c.cores[3], "destinations", [Destination(3)] * v)),
    ("cores.3.layer_names", 0xFFFF, lambda c, v: setattr(c.cores[3], "layer_names", [""] * v)),
    ("cores.3.layer_names.0", 0xFFFF, lambda c, v: setattr(c.cores[3], "layer_names", ["x" * v])),
    ("dvs.destinations", 0xFF, lambda c, v: setattr(c.dvs, "destinations", [Destination(3)] * v)),
]


@pytest.mark.parametrize("name, highest, change, negative",
                         [(*f, True) for f in IMAGE_FIELDS] + [(*f, False) for f in IMAGE_COUNTS])
def test_every_image_field_holds_0_to_its_highest_value_and_refuses_one_more_naming_itself(name, highest, change,
                                                                                           negative):
    def image_with(value):
        config = qualification_config("dvs_input")
        config.readout = Readout()
        config.cores[3].destinations = [Destination(3)]
        change(config, value)
        return encode_image(config)

    assert image_with(0) != image_with(highest)  # both fit (the encoder checks nothing else)
    for value in [highest + 1, -1] if negative else [highest + 1]:
        with pytest.raises(ConfigImageError, match=re.escape(f"{name} = {value}: the image field holds 0..{highest}")):
            image_with(value)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_an_image_whose_core_scale_is_not_positive_is_refused(scale):
    config = ChipConfig.from_json(_SMALL.to_json())
    config.cores[min(config.cores)].scale = scale
    with pytest.raises(ConfigImageError, match=f"core {min(config.cores)}: scale = {scale}; expected a positive"):
        decode_image(encode_image(config))


def test_an_image_the_chip_cannot_run_is_a_config_error():
    image = bytearray(encode_image(_SMALL))
    image[20] = ord("x")  # chip "xpeck2f": no such chip
    with pytest.raises(ConfigError, match="chip"):
        decode_image(bytes(image))


def test_the_emulator_on_a_pty_stores_the_image_verbatim_and_runs_bit_exact():
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as device:
        for seed in (0, 1, 3):
            rng = np.random.default_rng(seed)
            model, shape = random_model(rng)
            result = map_model(model, shape, monitor="all", slow_clock_period_us=500)
            device.flash(result.config)
            assert served.server.applied == encode_image(result.config)
            events = random_events(rng, shape, layer=result.input_cores[0])
            expected = simulate(result.config.to_network(), events).events
            assert device.run(events).events.tobytes() == expected.tobytes()


def _patched(image: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(image)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_each_malformed_field_of_an_image_is_named_by_its_own_check():
    """Each header, section and core field outside what format 1 allows is refused with the
    message of its own check (not a later one that happens to fail)."""
    image = encode_image(_small())
    section = HEADER.size  # the first section: a core
    core = section + SECTION.size
    (length,) = struct.unpack_from("<I", image, section + 4)
    cases = {
        "reserved = 1": _patched(image, 14, "<H", 1),
        r"chip = b'sp\\x00eck.*expected 0 and a NUL-padded name": _patched(image, 20, "16s", b"sp\0eck"),
        r"chip = b'\\x00.*expected 0 and a NUL-padded name": _patched(image, 20, "16s", b""),
        "section kind 4: format 1 has kinds": _patched(image, section, "<B", 4),
        "flags 0x20, reserved byte 0; expected flags below 0x20": _patched(image, core + 13, "<B", 32),
        "f 0, .* must be >= 1": _patched(image, core, "<H", 0),
        "kernel 255, .* the kernel must fit the padded input": _patched(image, core + 8, "<B", 255),
        f"runs past its length {length - 4}": _patched(image, section + 4, "<I", length - 4),
        "4 bytes after the last section": _patched(image + bytes(4), 8, "<I", len(image) + 4),
    }
    for message, bad in cases.items():
        with pytest.raises(ConfigImageError, match=message):
            decode_image(bad)
