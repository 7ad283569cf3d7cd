"""Wire-protocol conformance: drive the device named by SPIKEFLASH_DEVICE frame by frame through
each rule of docs/protocol.md (handshake and versions, every request's replies and paging,
the error table, stray frames, enforced uploads, input rules, the stream mode, the link, the
end of a session).

``emulate:pty`` (``make test``) starts a fresh emulator for this module, so the rules about an
unconfigured device hold; a board is tested as found (those rules are skipped if it holds a
configuration). In-process (``emu://``) and samna devices do not speak the wire protocol.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import zlib

import numpy as np
import pytest

from backend.emulator.processes import device_under_test
from backend.protocol import frames as fr
from backend.protocol.codec import MAX_PAYLOAD, encode_frame
from backend.protocol.config_image import HEADER, encode_image
from backend.protocol.frames import ErrorCode, FrameType
from backend.testing.conformance import WireClient, error_of, stream_then_stop
from backend.testing.qualification import qualification_config, random_input
from mapper import ChipConfig, list_chips
from snnlib import simulate
from snnlib.events import EVENT_DTYPE

T = FrameType


@pytest.fixture(scope="module")
def wire_url():
    url = os.environ["SPIKEFLASH_DEVICE"]
    if url.startswith(("emu://", "samna://")):
        pytest.skip(f"{url} does not speak the wire protocol; give a port path or socket:// URL")
    with device_under_test(url) as served:
        yield served


@pytest.fixture
def client(wire_url):
    with WireClient(wire_url) as c:
        c.greeting = c.hello()
        yield c
        c.hello()  # whatever the test left open: a new session, then STOP
        assert c.request(T.STOP).payload == bytes([T.STOP])


def config_for(client, name="pooled_chain", seed=0):
    return qualification_config(name, seed, client.greeting.chip)


def upload(c, image: bytes, size=None, sha=None, chunks=None):
    """CONFIG_BEGIN, the chunks ((offset, bytes) pairs; default: the image in order), and
    CONFIG_END; return the one reply."""
    c.send(T.CONFIG_BEGIN, fr.CONFIG_BEGIN.pack(len(image) if size is None else size,
                                                 sha or hashlib.sha256(image).digest()))
    step = c.link.max_payload - fr.CONFIG_OFFSET.size
    for offset, data in chunks or [(o, image[o:o + step]) for o in range(0, len(image), step)]:
        c.send(T.CONFIG_CHUNK, fr.CONFIG_OFFSET.pack(offset) + data)
    return c.request(T.CONFIG_END)


def flash(c, config) -> bytes:
    image = encode_image(config)
    reply = upload(c, image)
    assert reply.type == T.CONFIG_APPLIED, error_of(reply)
    assert fr.CONFIG_APPLIED.unpack(reply.payload) == (0, len(image), hashlib.sha256(image).digest())
    return image


def read_config(c, offset: int, length: int) -> bytes:
    reply = c.request(T.CONFIG_READ, fr.CONFIG_READ.pack(offset, length))
    assert reply.type == T.CONFIG_DATA and fr.CONFIG_OFFSET.unpack_from(reply.payload) == (offset,)
    return reply.payload[fr.CONFIG_OFFSET.size:]


def run(c, run_id: int, payloads: list[bytes], n_events: int):
    """RUN_BEGIN, the EVENTS payloads, RUN_END; the output payloads and the last reply."""
    c.send(T.RUN_BEGIN, fr.RUN_BEGIN.pack(run_id, n_events))
    for payload in payloads:
        c.send(T.EVENTS, payload)
    c.send(T.RUN_END, fr.RUN_END.pack(run_id))
    out = []
    while (frame := c.reply(30.0)).type == T.EVENTS:
        out.append(frame.payload)
    return out, frame


def assert_error(frame, code: ErrorCode, request: FrameType) -> str:
    got_code, got_request, message = error_of(frame)
    assert (got_code, got_request) == (code, request), message
    return message


# -- handshake -------------------------------------------------------------------------------
def test_hello_is_answered_by_a_greeting_with_its_nonce_and_version(client):
    g = client.greeting
    assert g.version == fr.PROTOCOL_VERSION and g.window >= 1 and g.max_payload >= 64 and g.chip
    status = fr.unpack_status(client.request(T.STATUS).payload)
    assert status["boot_id"] == g.boot_id


def test_a_hello_of_another_version_gets_the_device_version_and_no_session(wire_url):
    with WireClient(wire_url) as c:
        greeting = c.hello(version=1)
        assert greeting.version == fr.PROTOCOL_VERSION
        time.sleep(0.3)  # past the 0.2 s between unasked greetings
        c.link.send(T.STATUS, b"", time.monotonic() + 1)
        frames = c.raw_frames(2.0, until=lambda f: f.type == T.GREETING)
        assert frames[-1].type == T.GREETING and fr.Greeting.unpack(frames[-1].payload).nonce == 0
        assert T.STATUS_DATA not in [f.type for f in frames]


# -- before any configuration ------------------------------------------------------------------
def test_an_unconfigured_device_refuses_what_needs_a_configuration(client):
    if read_config(client, 0, 16):
        pytest.skip("the device holds a configuration already")
    assert_error(client.request(T.RESET_STATES), ErrorCode.NOT_CONFIGURED, T.RESET_STATES)
    assert_error(client.request(T.READ_STATES, fr.READ_STATES.pack(0, 0)), ErrorCode.NOT_CONFIGURED,
                 T.READ_STATES)
    events = np.zeros(2, EVENT_DTYPE)
    out, end = run(client, 1, fr.pack_events(events, client.link.max_payload), 2)
    assert out == [] and assert_error(end, ErrorCode.NOT_CONFIGURED, T.RUN_END)
    assert client.nothing_within(0.3) == []  # one answer per transaction, at its end
    code, request, _ = error_of(client.request(T.STREAM, fr.STREAM.pack(1)))
    assert request == T.STREAM and code in (ErrorCode.NOT_CONFIGURED, ErrorCode.UNKNOWN_FRAME)  # the mode is optional


# -- requests --------------------------------------------------------------------------------
@pytest.mark.parametrize("frame_type", [0x0D, 0x7F, T.OK, T.END_OF_RUN])
def test_a_frame_that_is_not_a_request_is_unknown(client, frame_type):
    assert_error(client.request(frame_type, b"\x00" * 4), ErrorCode.UNKNOWN_FRAME, frame_type)


@pytest.mark.parametrize("frame_type, payload", [(T.READ_STATES, b"\x00\x00"), (T.CONFIG_READ, b"\x00" * 7),
                                                 (T.RUN_BEGIN, b"\x01")])
def test_a_short_payload_is_bad_payload(client, frame_type, payload):
    flash(client, config_for(client))
    if frame_type == T.RUN_BEGIN:  # inside a transaction: answered at its end
        client.send(frame_type, payload)
        frame_type, reply = T.RUN_END, client.request(T.RUN_END, fr.RUN_END.pack(0))
    else:
        reply = client.request(frame_type, payload)
    assert_error(reply, ErrorCode.BAD_PAYLOAD, frame_type)


def test_status_counts_and_stop(client):
    before = fr.unpack_status(client.request(T.STATUS).payload)
    assert len(before) == len(fr.STATUS_FIELDS) and before["frames_rx"] > 0 and before["frames_tx"] > 0
    assert client.request(T.STOP).payload == bytes([T.STOP])
    after = fr.unpack_status(client.request(T.STATUS).payload)
    assert after["frames_rx"] > before["frames_rx"] and after["boot_id"] == before["boot_id"]


def test_requests_past_the_device_window_wait_for_its_acks_and_are_all_answered(client):
    """The host keeps at most the device's window of frames unacknowledged (docs/protocol.md,
    "The link"): 2 windows + 1 STATUS requests sent back to back go out as the device acknowledges
    them, and each gets its one STATUS_DATA."""
    n = 2 * client.greeting.window + 1
    for _ in range(n):
        client.send(T.STATUS)
    replies = [client.reply() for _ in range(n)]
    assert [r.type for r in replies] == [T.STATUS_DATA] * n
    assert client.nothing_within(0.1) == []  # one answer per request


def test_flash_applies_the_image_and_reads_it_back_page_by_page(client):
    image = flash(client, config_for(client))
    page = client.max_payload - fr.CONFIG_OFFSET.size
    assert read_config(client, 0, 1 << 20) == image[:page]  # a reply fits the client's max_payload
    assert b"".join(read_config(client, o, page) for o in range(0, len(image), page)) == image
    assert read_config(client, 10, 5) == image[10:15]
    assert read_config(client, len(image) - 3, 100) == image[-3:]
    assert read_config(client, len(image), 100) == b"" and read_config(client, len(image) + 50, 1) == b""


def test_an_empty_upload_writes_nothing_and_keeps_the_configuration(client):
    image = flash(client, config_for(client))
    reply = upload(client, b"")
    assert reply.type == T.CONFIG_APPLIED and fr.CONFIG_APPLIED.unpack(reply.payload)[:2] == (1, 0)
    assert read_config(client, 0, 64) == image[:64]


def test_config_begin_size_and_digest_are_enforced(client):
    image = flash(client, config_for(client))
    other = encode_image(config_for(client, "single_core"))
    half = len(other) // 2
    for kw in (dict(sha=hashlib.sha256(b"another").digest()),                   # wrong digest
               dict(size=len(other) + 4),                                        # fewer bytes than announced
               dict(size=len(other) - 4),                                        # more bytes than announced
               dict(chunks=[(0, other[:half]), (half + 1, other[half + 1:])])):  # a gap
        assert_error(upload(client, other, **kw), ErrorCode.CONFIG_INVALID, T.CONFIG_END)
        assert client.nothing_within(0.1) == []
    assert read_config(client, 0, 1 << 20) == image[:client.max_payload - 4]  # the old one is kept


def test_an_image_that_is_not_canonical_or_not_for_this_chip_is_invalid(client):
    image = encode_image(config_for(client))
    reserved = bytearray(image)
    reserved[14] = 1  # the header's reserved u16
    readout = bytearray(image)
    readout[HEADER.size] = 3  # the first section as the reserved readout kind
    json_v1 = config_for(client).to_json().encode()  # what version 1 carried
    other_chip = next(chip for chip in list_chips() if chip != client.greeting.chip)
    foreign = encode_image(ChipConfig.from_network(config_for(client).to_network(), chip=other_chip))
    for bad in (bytes(reserved), bytes(readout), image + bytes(4), json_v1, foreign):
        assert_error(upload(client, bad), ErrorCode.CONFIG_INVALID, T.CONFIG_END)


def test_stray_frames_are_refused_at_once(client):
    flash(client, config_for(client))
    for frame_type, payload in ((T.CONFIG_CHUNK, fr.CONFIG_OFFSET.pack(0) + b"x"), (T.CONFIG_END, b""),
                                (T.EVENTS, fr.pack_events(np.zeros(1, EVENT_DTYPE), 64)[0]),
                                (T.RUN_END, fr.RUN_END.pack(9))):
        assert_error(client.request(frame_type, payload), ErrorCode.BAD_STATE, frame_type)
    assert client.request(T.STATUS).type == T.STATUS_DATA  # no stale error answers a later request


@pytest.mark.parametrize("first, second", [(T.RUN_BEGIN, T.RUN_BEGIN), (T.RUN_BEGIN, T.CONFIG_BEGIN),
                                           (T.CONFIG_BEGIN, T.RUN_BEGIN)])
def test_a_begin_inside_an_open_transaction_abandons_it_and_is_refused(client, first, second):
    flash(client, config_for(client))
    begin = {T.RUN_BEGIN: fr.RUN_BEGIN.pack(5, 0), T.CONFIG_BEGIN: fr.CONFIG_BEGIN.pack(4, bytes(32))}
    client.send(first, begin[first])
    assert_error(client.request(second, begin[second]), ErrorCode.BAD_STATE, second)
    end = T.RUN_END if first == T.RUN_BEGIN else T.CONFIG_END
    assert_error(client.request(end, fr.RUN_END.pack(5) if end == T.RUN_END else b""), ErrorCode.BAD_STATE, end)


@pytest.mark.parametrize("name", ["pooled_chain", "fanout_leak", "dvs_input"])
def test_a_run_streams_output_and_ends_with_its_marker(client, name):
    config = config_for(client, name)
    config.cores[min(config.cores)].monitor = False  # unmonitored cores still get a core record
    flash(client, config)
    network = config.to_network()
    events = random_input(network, 400, seed=3)
    before = fr.unpack_status(client.request(T.STATUS).payload)
    out, end_frame = run(client, 77, fr.pack_events(events, client.link.max_payload), len(events))
    assert end_frame.type == T.END_OF_RUN, error_of(end_frame)
    end = fr.EndOfRun.unpack(end_frame.payload)
    output = fr.unpack_events(out)
    assert (end.run_id, end.events_in, end.events_out) == (77, len(events), len(output))
    assert end.last_t == int(events["t"][-1])  # the time of the last input event
    assert set(end.core_in) == set(network.input_shapes())  # every core, and the DVS stage as 13
    assert sum(end.core_out.values()) >= len(output) and end.overflow == 0
    assert output.tobytes() == simulate(network, events).events.tobytes()
    after = fr.unpack_status(client.request(T.STATUS).payload)
    assert (after["runs"] - before["runs"], after["events_in"] - before["events_in"],
            after["events_out"] - before["events_out"]) == (1, len(events), len(output))


# -- the stream mode (optional) ----------------------------------------------------------------
def test_a_stream_ends_with_its_marker_before_the_ok_of_stop_or_is_refused(client):
    config = config_for(client, "dvs_input")  # the DVS stage takes a sensor's events
    flash(client, config)
    frames = stream_then_stop(client, 41, seconds=0.5)
    if frames[0].type == T.ERROR:  # no sensor, or no stream mode: refused at once, nothing else
        code, request, _ = error_of(frames[0])
        assert request == T.STREAM and code in (ErrorCode.NO_SENSOR, ErrorCode.UNKNOWN_FRAME)
        assert [f.type for f in frames[1:]] == [T.OK]
        return
    *output, end_frame, ok = frames
    assert [f.type for f in output] == [T.EVENTS] * len(output) and end_frame.type == T.END_OF_RUN
    end = fr.EndOfRun.unpack(end_frame.payload)
    assert (end.run_id, end.events_out) == (41, len(fr.unpack_events([f.payload for f in output])))
    assert client.request(T.STATUS).type == T.STATUS_DATA  # nothing of the stream is left over


def test_a_stream_inside_an_open_run_abandons_it_and_is_refused(client):
    flash(client, config_for(client, "dvs_input"))
    client.send(T.RUN_BEGIN, fr.RUN_BEGIN.pack(6, 0))
    code, request, message = error_of(client.request(T.STREAM, fr.STREAM.pack(2)))
    if code == ErrorCode.UNKNOWN_FRAME:
        pytest.skip("the device has no stream mode (optional in version 2)")
    assert (code, request) == (ErrorCode.BAD_STATE, T.STREAM), message
    assert_error(client.request(T.RUN_END, fr.RUN_END.pack(6)), ErrorCode.BAD_STATE, T.RUN_END)


def test_the_device_sends_at_most_the_host_window_ahead(wire_url):
    with WireClient(wire_url, window=2) as c:
        c.greeting = c.hello()
        config = config_for(c, "fanout_leak")
        flash(c, config)
        events = random_input(config.to_network(), 3000, seed=6)
        c.send(T.RUN_BEGIN, fr.RUN_BEGIN.pack(1, len(events)))
        for payload in fr.pack_events(events, c.link.max_payload):
            c.send(T.EVENTS, payload)
        c.send(T.RUN_END, fr.RUN_END.pack(1))
        peeked = c.raw_frames(1.0)  # not acknowledged: the device stops after 2 new frames
        assert 0 < len({f.seq for f in peeked if f.type not in fr.CONTROL_TYPES}) <= 2
        frames = []  # then acknowledged: it retransmits from the oldest and goes on to the end
        while (frame := c.reply(30.0)).type == T.EVENTS:
            frames.append(frame.payload)
        assert frame.type == T.END_OF_RUN
        expected = simulate(config.to_network(), events).events
        assert fr.unpack_events(frames).tobytes() == expected.tobytes()


def test_bad_events_are_answered_once_at_run_end(client):
    config = config_for(client)
    flash(client, config)
    events = random_input(config.to_network(), 20, seed=4)
    payloads = fr.pack_events(events, client.link.max_payload)
    back = events.copy()
    back["t"] = np.arange(len(events)) * 10  # sent second half first: time goes back between frames
    outside = events.copy()
    outside["x"][5] = 500  # outside the layer's input
    unknown = events.copy()
    unknown["layer"][0] = 12  # no such input layer
    cases = [(payloads, len(events) + 1),                                           # count mismatch
             (fr.pack_events(back[10:], 1024) + fr.pack_events(back[:10], 1024), len(events)),
             (fr.pack_events(outside, 1024), len(events)), (fr.pack_events(unknown, 1024), len(events))]
    for run_payloads, n in cases:
        out, reply = run(client, 3, run_payloads, n)
        assert out == [] and assert_error(reply, ErrorCode.BAD_EVENTS, T.RUN_END)
        assert client.nothing_within(0.1) == []
    out, reply = run(client, 4, [payloads[0] + b"\x01\x02\x03"], len(events))  # not 8 + 8 n bytes
    assert out == [] and assert_error(reply, ErrorCode.BAD_PAYLOAD, T.RUN_END)


def test_states_page_by_page_and_reset(client):
    config = config_for(client)
    flash(client, config)
    events = random_input(config.to_network(), 300, seed=5)
    run(client, 1, fr.pack_events(events, client.link.max_payload), len(events))
    per_page = (client.max_payload - fr.STATE_DATA.size) // 2
    for core, layer in config.to_network().layers.items():
        shape = layer.output_shape
        total, got, offset = int(np.prod(shape)), [], 0
        while offset < total:
            reply = client.request(T.READ_STATES, fr.READ_STATES.pack(core, offset))
            head = fr.STATE_DATA.unpack_from(reply.payload)
            chunk = np.frombuffer(reply.payload, "<i2", offset=fr.STATE_DATA.size)
            assert head == (core, *shape, offset, total) and len(chunk) == min(per_page, total - offset)
            got.append(chunk)
            offset += len(chunk)
        past = client.request(T.READ_STATES, fr.READ_STATES.pack(core, total))
        assert len(past.payload) == fr.STATE_DATA.size  # past the end: no elements
    unknown = max(config.cores) + 1
    assert_error(client.request(T.READ_STATES, fr.READ_STATES.pack(unknown, 0)), ErrorCode.UNKNOWN_CORE,
                 T.READ_STATES)
    assert client.request(T.RESET_STATES).payload == bytes([T.RESET_STATES])
    core = config.cores[min(config.cores)]
    initial = core.initial_state if core.initial_state is not None else np.zeros(core.output_shape)
    reply = client.request(T.READ_STATES, fr.READ_STATES.pack(min(config.cores), 0))
    states = np.frombuffer(reply.payload, "<i2", offset=fr.STATE_DATA.size)
    assert (states == initial.reshape(-1)[:len(states)]).all()


def test_a_configuration_and_the_stream_counters_survive_a_new_hello(client):
    image = flash(client, config_for(client))
    before = fr.unpack_status(client.request(T.STATUS).payload)
    client.hello()
    assert read_config(client, 0, 1 << 20) == image[:client.max_payload - 4]
    assert client.request(T.RESET_STATES).type == T.OK
    after = fr.unpack_status(client.request(T.STATUS).payload)
    assert after["frames_rx"] > before["frames_rx"] and after["frames_tx"] > before["frames_tx"]


def test_a_payload_longer_than_its_layout_is_accepted_and_the_extra_ignored(client):
    image = flash(client, config_for(client))
    reply = client.request(T.CONFIG_READ, fr.CONFIG_READ.pack(0, 8) + b"later fields")
    assert reply.type == T.CONFIG_DATA and reply.payload[fr.CONFIG_OFFSET.size:] == image[:8]
    assert client.request(T.STATUS, b"\x00" * 8).type == T.STATUS_DATA


def test_requests_inside_an_open_upload_are_answered_and_leave_it_open(client):
    old = flash(client, config_for(client))
    new = encode_image(config_for(client, seed=1))
    client.send(T.CONFIG_BEGIN, fr.CONFIG_BEGIN.pack(len(new), hashlib.sha256(new).digest()))
    client.send(T.CONFIG_CHUNK, fr.CONFIG_OFFSET.pack(0) + new[:100])
    assert client.request(T.STATUS).type == T.STATUS_DATA
    assert read_config(client, 0, 16) == old[:16]  # the old image is in force until CONFIG_END
    assert client.request(T.RESET_STATES).payload == bytes([T.RESET_STATES])
    step = client.link.max_payload - fr.CONFIG_OFFSET.size
    for offset in range(100, len(new), step):
        client.send(T.CONFIG_CHUNK, fr.CONFIG_OFFSET.pack(offset) + new[offset:offset + step])
    reply = client.request(T.CONFIG_END)
    assert reply.type == T.CONFIG_APPLIED, error_of(reply)
    assert read_config(client, 0, 16) == new[:16]


def test_stop_abandons_an_open_upload(client):
    image = flash(client, config_for(client))
    client.send(T.CONFIG_BEGIN, fr.CONFIG_BEGIN.pack(len(image), hashlib.sha256(image).digest()))
    assert client.request(T.STOP).payload == bytes([T.STOP])
    assert_error(client.request(T.CONFIG_END), ErrorCode.BAD_STATE, T.CONFIG_END)  # stray now


def test_run_end_until_us_applies_the_leak_ticks_after_the_last_event(client):
    config = config_for(client, "fanout_leak")
    flash(client, config)
    events = random_input(config.to_network(), 100, seed=2)
    until = int(events["t"][-1]) + 5000
    client.send(T.RUN_BEGIN, fr.RUN_BEGIN.pack(8, len(events)))
    for payload in fr.pack_events(events, client.link.max_payload):
        client.send(T.EVENTS, payload)
    client.send(T.RUN_END, fr.pack_run_end(8, until))
    out = []
    while (frame := client.reply(30.0)).type == T.EVENTS:
        out.append(frame.payload)
    assert frame.type == T.END_OF_RUN, error_of(frame)
    expected = simulate(config.to_network(), events, until_us=until).events
    assert fr.unpack_events(out).tobytes() == expected.tobytes() and int(expected["t"].max()) > events["t"][-1]


@pytest.mark.parametrize("interrupt", [T.STOP, T.HELLO])
def test_stop_or_a_new_hello_abandons_a_run_in_progress(client, interrupt):
    """A run of 2.5e9 leak ticks (hours): STOP is answered by OK and a new HELLO by its
    GREETING, with no END_OF_RUN; the next run is bit-exact."""
    config = config_for(client, "fanout_leak")
    flash(client, config)
    endless = random_input(config.to_network(), 2, seed=7)
    endless["t"] = [0, 10**12]
    client.send(T.RUN_BEGIN, fr.RUN_BEGIN.pack(9, 2))
    for payload in fr.pack_events(endless, client.link.max_payload):  # two: the span passes 2**32 µs
        client.send(T.EVENTS, payload)
    client.send(T.RUN_END, fr.RUN_END.pack(9))
    time.sleep(0.3)
    if interrupt == T.STOP:
        client.send(T.STOP)
        while (frame := client.reply(5.0)).type == T.EVENTS:
            pass
        assert (frame.type, frame.payload) == (T.OK, bytes([T.STOP]))
    else:
        client.hello()
    assert client.nothing_within(0.3) == []  # no END_OF_RUN, no output of the abandoned run
    assert client.request(T.RESET_STATES).type == T.OK
    events = random_input(config.to_network(), 200, seed=8)
    out, end = run(client, 10, fr.pack_events(events, client.link.max_payload), len(events))
    assert end.type == T.END_OF_RUN
    assert fr.unpack_events(out).tobytes() == simulate(config.to_network(), events).events.tobytes()


# -- announced sizes (docs/protocol.md, Defaults) ---------------------------------------------
@pytest.mark.parametrize("max_payload, window", [(fr.MIN_PAYLOAD - 1, 4), (MAX_PAYLOAD + 1, 4),
                                                 (256, 0), (256, fr.MAX_WINDOW + 1)])
def test_a_hello_announcing_sizes_out_of_range_is_ignored(client, max_payload, window):
    """max_payload outside 64..65,536 or window outside 1..256: no GREETING answers that
    HELLO and the session in progress goes on."""
    image = flash(client, config_for(client))
    nonce = 0x5EED0001
    client.link.send_control(T.HELLO, fr.Hello(nonce, max_payload, window).pack())
    assert client.nothing_within(0.5) == []
    assert nonce not in [g.nonce for g in client.greetings]
    assert client.request(T.STATUS).type == T.STATUS_DATA  # the same session, its seq numbers
    assert read_config(client, 0, 16) == image[:16]


def test_an_upload_announcing_more_than_16_mib_is_invalid(client):
    image = flash(client, config_for(client))
    client.send(T.CONFIG_BEGIN, fr.CONFIG_BEGIN.pack(fr.MAX_CONFIG_BYTES + 1, bytes(32)))
    client.send(T.CONFIG_CHUNK, fr.CONFIG_OFFSET.pack(0) + image[:64])
    assert_error(client.request(T.CONFIG_END), ErrorCode.CONFIG_INVALID, T.CONFIG_END)
    assert client.nothing_within(0.1) == []
    assert read_config(client, 0, 1 << 20) == image[:client.max_payload - 4]  # the old one is kept


def test_a_run_announcing_over_2_25_events_or_sending_past_its_count_is_bad_events(client):
    config = config_for(client)
    flash(client, config)
    events = random_input(config.to_network(), 20, seed=9)
    payloads = fr.pack_events(events, client.link.max_payload)
    for announced in (fr.MAX_RUN_EVENTS + 1, len(events) - 1):  # too many; fewer than the EVENTS bring
        out, reply = run(client, 6, payloads, announced)
        assert out == [] and assert_error(reply, ErrorCode.BAD_EVENTS, T.RUN_END)
        assert client.nothing_within(0.1) == []
    out, reply = run(client, 7, payloads, len(events))  # the device took nothing of them: bit-exact
    assert reply.type == T.END_OF_RUN
    assert fr.unpack_events(out).tobytes() == simulate(config.to_network(), events).events.tobytes()


# -- the link ----------------------------------------------------------------------------------
def test_duplicates_are_acked_gaps_and_corruption_nacked_garbage_skipped(client):
    assert client.request(T.STATUS).type == T.STATUS_DATA  # host seq 0 used, device seq 0 sent
    write = client.port.write

    def acks(wire: bytes) -> list:
        write(wire)
        frames = client.raw_frames(0.5, until=lambda f: f.type in (T.ACK, T.NACK))
        return [(FrameType(f.type), fr.U16.unpack(f.payload)[0]) for f in frames]

    assert acks(encode_frame(T.STATUS, 0, b"")) == [(T.ACK, 1)]  # a duplicate, not executed again
    assert acks(encode_frame(T.STATUS, 5, b"")) == [(T.NACK, 1)]  # a gap
    time.sleep(0.1)  # NACKs for one expected seq are rate-limited
    corrupt = bytearray(encode_frame(T.STATUS, 1, b""))
    corrupt[-3] ^= 0xFF
    assert acks(bytes(corrupt)) == [(T.NACK, 1)]
    write(b"\x00garbage\xc0\xc0" + encode_frame(T.STATUS, 1, b""))
    frames = client.raw_frames(1.0, until=lambda f: f.type == T.STATUS_DATA)
    assert (T.ACK, fr.U16.pack(2)) in [(f.type, f.payload) for f in frames]
    assert frames[-1].type == T.STATUS_DATA and frames[-1].seq == 1
    write(encode_frame(T.ACK, 0, fr.U16.pack(2)))


def test_a_frame_longer_than_the_device_announced_is_refused(client):
    assert client.request(T.STATUS).type == T.STATUS_DATA  # host seq 0 used
    payload = bytes(client.greeting.max_payload + 1)
    body = struct.pack("<BBHI", T.STATUS, 0, 1, len(payload)) + payload
    body += struct.pack("<I", zlib.crc32(body))
    client.port.write(b"\xc0" + body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc") + b"\xc0")
    frames = client.raw_frames(1.0, until=lambda f: f.type == T.NACK)
    assert frames and frames[-1].type == T.NACK and fr.U16.unpack(frames[-1].payload) == (1,)
    assert T.STATUS_DATA not in [f.type for f in frames]


def test_a_piece_without_an_end_far_past_the_frame_size_is_dropped_and_the_link_resynchronises(client):
    """A megabyte with no END (over 2 x (P + 12) for any P): discarded as it arrives, counted
    as a rejected frame; the next frame after an END is answered."""
    before = fr.unpack_status(client.request(T.STATUS).payload)
    client.port.write(b"\xc0" + bytes(range(1, 192)) * ((1 << 20) // 191 + 1))
    assert client.request(T.STATUS, timeout=10.0).type == T.STATUS_DATA
    after = fr.unpack_status(client.request(T.STATUS).payload)  # counted by now
    assert after["rejected_frames"] > before["rejected_frames"]


def test_a_device_that_gets_no_acknowledgement_ends_the_session_and_says_so(client):
    boot_id = client.greeting.boot_id
    client.link.send(T.STATUS, b"", time.monotonic() + 1)  # and never acknowledge the reply
    frames = client.raw_frames(10.0, until=lambda f: f.type == T.GREETING)
    data = [f for f in frames if f.type == T.STATUS_DATA]
    assert len(data) >= 2 and len({f.seq for f in data}) == 1  # retransmitted, then given up
    end = fr.Greeting.unpack(frames[-1].payload)
    assert frames[-1].type == T.GREETING and (end.nonce, end.boot_id) == (0, boot_id)
    time.sleep(0.3)
    client.port.write(encode_frame(T.STATUS, 1, b""))  # out of session: any frame gets a greeting
    frames = client.raw_frames(2.0, until=lambda f: f.type == T.GREETING)
    assert frames[-1].type == T.GREETING and T.STATUS_DATA not in [f.type for f in frames]
    client.hello()
    assert client.request(T.STATUS).type == T.STATUS_DATA
