"""The live mode: ``Device.stream()`` on an emulator whose sensor replays a recording, over a
real ``spikeflash emulate --sensor`` process on a pty, an emulator served on a pty / TCP, and
``emu://``. The stream's output equals the event-exact simulation bit for bit; closing it
mid-way stops the device, which then runs bit-exact; the host's queue is bounded and loses
nothing without saying so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.devices import open_device
from backend.emulator.chip import EmulatedChip
from backend.emulator.processes import emulator_on_pty
from backend.emulator.sensor import Playback, ReplaySensor
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import DeviceBusy, NoSensor, ProtocolError, StreamOverflow
from backend.files.events import load_events, save_events
from backend.protocol import frames as fr
from backend.protocol.frames import FrameType as T
from backend.testing.conformance import WireClient, stream_then_stop
from backend.testing.qualification import qualification_config, random_input
from snnlib import simulate
from snnlib.events import InvalidEventsError

DVS = qualification_config("dvs_input")  # input from the DVS stage (layer 13)
LEAKY = qualification_config("fanout_leak")  # three cores, core 5 leaks on a 400 µs clock


def recording(config, n: int, seed: int, duration_us: int = 5000) -> np.ndarray:
    return random_input(config.to_network(), n, duration_us, seed)


def wait_until_ended(stream, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not stream.ended:
        assert time.monotonic() < deadline, "the stream did not end"
        time.sleep(0.01)


def test_a_stream_from_a_sensor_file_over_a_pty_emulator_process_equals_the_simulation(tmp_path):
    first, second = recording(DVS, 2000, seed=1), recording(DVS, 1500, seed=2)
    first["t"] += 10**12  # absolute timestamps, as a camera records them
    save_events(tmp_path / "scene.npz", {"first": first, "second": second})  # a playlist of two
    with emulator_on_pty(options=("--sensor", str(tmp_path / "scene.npz"), "--fast")) as path, \
            open_device(path) as device:
        device.flash(DVS)
        for rec in (first, second):
            device.reset()
            with device.stream() as stream:
                got = stream.collect()
            simulation = simulate(DVS.to_network(), rec)
            expected = simulation.events
            assert len(expected) and got.dtype == expected.dtype and (got == expected).all()
            c = stream.counters  # dropped: events the DVS stage crops, as the simulation counts them
            cropped = sum(int(counts["dropped"]) for counts in simulation.counters.values())
            assert (c.sent, c.received, c.dropped) == (len(rec), len(expected), cropped)
        device.reset()
        assert (device.run(first).events == simulate(DVS.to_network(), first).events).all()


def test_a_stream_at_the_recorded_pace_equals_the_simulation_on_emu():
    rec = recording(LEAKY, 600, seed=3, duration_us=300_000)  # 0.3 s of sensor time, leak ticks between
    with open_device("emu://", sensor=rec) as device:
        device.flash(LEAKY)
        device.reset()
        with device.stream() as stream:
            batches = list(stream)
        assert len(batches) > 1  # the output came as the recording played, not at its end
        got = np.concatenate(batches)
        assert (got == simulate(LEAKY.to_network(), rec).events).all() and len(got)
        assert stream.counters.sent == len(rec)


@pytest.fixture(params=["pty", "tcp", "emu"])
def sensor_device(request):
    """A device whose sensor replays a long recording (10 s at its recorded pace)."""
    rec = recording(LEAKY, 2000, seed=4, duration_us=10_000_000)
    if request.param == "emu":
        with open_device("emu://", sensor=rec) as device:
            yield device, rec
        return
    server = EmulatorServer(lambda: EmulatedChip(sensor=ReplaySensor(rec)))
    with ServedEmulator(server, request.param) as served, open_device(served.url) as device:
        yield device, rec


def test_closing_a_stream_mid_way_stops_the_device_and_the_next_run_is_bit_exact(sensor_device):
    device, rec = sensor_device
    device.flash(LEAKY)
    device.reset()
    with device.stream() as stream:
        got = [next(stream)]  # the first output: the recording has started
        with pytest.raises(DeviceBusy, match="close the stream first"):
            device.run(rec)
    got = np.concatenate(got + list(stream))  # what arrived before the device stopped
    assert 0 < stream.counters.sent < len(rec)  # stopped mid-recording; the device says how far
    assert len(got) == stream.counters.received
    assert (got == simulate(LEAKY.to_network(), rec).events[:len(got)]).all()  # a prefix, bit for bit
    events = recording(LEAKY, 300, seed=5)
    device.reset()
    got = device.run(events, until_us=8000).events
    assert (got == simulate(LEAKY.to_network(), events, until_us=8000).events).all() and len(got)


@pytest.fixture(params=["pty", "emu"])
def fast_device(request):
    rec = recording(LEAKY, 3000, seed=6, duration_us=5_000_000)  # leak ticks: several steps
    if request.param == "emu":
        with open_device("emu://", sensor=rec, fast=True) as device:
            yield device, rec
        return
    server = EmulatorServer(lambda: EmulatedChip(sensor=ReplaySensor(rec, fast=True)))
    with ServedEmulator(server, "pty") as served, open_device(served.url) as device:
        yield device, rec


def test_a_full_queue_raises_stream_overflow_after_the_batches_before_it(fast_device):
    device, rec = fast_device
    device.flash(LEAKY)
    device.reset()
    with device.stream(max_queued=1) as stream:  # one batch at a time: the second does not fit
        wait_until_ended(stream)
        first = next(stream)
        with pytest.raises(StreamOverflow, match="max_queued=1") as error:
            next(stream)
    c = stream.counters
    assert len(first) and c.dropped == c.received - len(first) > 0
    assert error.value.counters.dropped > 0
    device.reset()
    assert (device.run(rec).events == simulate(LEAKY.to_network(), rec).events).all()


def test_a_full_queue_with_on_full_drop_counts_every_lost_event(fast_device):
    device, rec = fast_device
    device.flash(LEAKY)
    device.reset()
    with device.stream(max_queued=1, on_full="drop") as stream:
        wait_until_ended(stream)
        delivered = sum(len(batch) for batch in stream)
    c = stream.counters
    assert c.received == len(simulate(LEAKY.to_network(), rec).events)  # the device sent everything
    assert c.dropped == c.received - delivered > 0 and c.sent == len(rec)


def test_stream_options_out_of_range_are_refused_before_anything_starts(fast_device):
    device, rec = fast_device
    device.flash(LEAKY)
    device.reset()
    for options, field in (({"on_full": "block"}, "on_full"), ({"max_queued": 0}, "max_queued")):
        with pytest.raises(ValueError, match=f"stream\\({field}="):
            device.stream(**options)
    with device.stream() as stream:  # the refusals started nothing: the stream runs in full
        assert (stream.collect() == simulate(LEAKY.to_network(), rec).events).all()


def test_a_device_without_a_sensor_raises_no_sensor():
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as device:
        device.flash(LEAKY)
        with pytest.raises(NoSensor, match="NO_SENSOR.*no sensor"):
            device.stream().collect()
        events = recording(LEAKY, 200, seed=7)
        assert (device.run(events).events == simulate(LEAKY.to_network(), events).events).all()
    with open_device("emu://") as device:
        device.flash(LEAKY)
        with pytest.raises(NoSensor, match="has none") as error:
            device.stream().collect()
        assert "--sensor FILE" in error.value.hint


def test_a_recording_that_does_not_fit_the_configuration_is_refused_before_it_plays():
    rec = recording(DVS, 100, seed=8)  # DVS events, for a configuration without a DVS stage
    server = EmulatorServer(lambda: EmulatedChip(sensor=ReplaySensor(rec, fast=True)))
    with ServedEmulator(server, "pty") as served, open_device(served.url) as device:
        device.flash(LEAKY)
        with pytest.raises(ProtocolError, match="BAD_EVENTS.*recording"):
            device.stream().collect()
    with open_device("emu://", sensor=rec) as device:
        device.flash(LEAKY)
        with pytest.raises(InvalidEventsError):
            device.stream().collect()


def test_a_second_stream_without_reset_is_refused_naming_the_reset():
    rec = recording(LEAKY, 100, seed=9)
    with open_device("emu://", sensor=rec, fast=True) as device:
        device.flash(LEAKY)
        device.reset()
        device.stream().collect()
        with pytest.raises(InvalidEventsError, match="reset the states first"):
            device.stream().collect()
        device.reset()
        assert len(device.stream().collect())


def test_playback_releases_events_at_their_recorded_pace():
    rec = recording(LEAKY, 5, seed=10)
    rec["t"] = [1000, 1000, 1500, 3000, 3000]  # µs
    play = Playback(rec, start_s=100.0, fast=False)
    assert len(play.take(100.0, limit=10)) == 2  # t = 1000: due at the start
    assert play.wait_s(100.0) == pytest.approx(500e-6)
    assert len(play.take(100.0004, limit=10)) == 0
    assert len(play.take(100.0005, limit=10)) == 1  # t = 1500, 500 µs in
    assert len(play.take(100.01, limit=1)) == 1 and not play.done  # at most `limit` at a time
    assert len(play.take(100.01, limit=1)) == 1 and play.done
    fast = Playback(rec, start_s=100.0, fast=True)
    assert len(fast.take(0.0, limit=10)) == 5 and fast.wait_s(0.0) == 0.0


def test_a_sensor_refuses_recordings_it_cannot_replay():
    with pytest.raises(InvalidEventsError, match="at least one"):
        ReplaySensor([])
    backwards = recording(LEAKY, 3, seed=11)
    backwards["t"] = [5, 3, 4]
    with pytest.raises(InvalidEventsError, match=r"recordings\[1\]\): events\[1\].t = 3 is earlier"):
        ReplaySensor([recording(LEAKY, 3, seed=11), backwards])
    backwards["t"] = [-1, 3, 4]
    with pytest.raises(InvalidEventsError, match="never negative") as refused:
        ReplaySensor(backwards)
    assert (refused.value.field, refused.value.value, refused.value.index) == ("t", -1, 0)
    with pytest.raises(InvalidEventsError, match="EVENT_DTYPE"):
        ReplaySensor(np.zeros(3))


@pytest.mark.parametrize("fast", [False, True])
def test_on_the_wire_a_stream_ends_with_end_of_run_then_the_ok_of_stop(fast):
    rec = recording(DVS, 2000, seed=12, duration_us=20_000_000 if not fast else 5000)
    server = EmulatorServer(lambda: EmulatedChip(sensor=ReplaySensor(rec, fast=fast)))
    with ServedEmulator(server, "pty") as served:
        with open_device(served.url) as device:  # the configuration stays for the next host
            device.flash(DVS)
        with WireClient(served.url) as client:
            client.hello()
            frames = stream_then_stop(client, 9, seconds=1.0)  # fast: ended before the STOP; else stopped
    *output, end_frame, ok = frames
    assert {f.type for f in output} <= {T.EVENTS} and end_frame.type == T.END_OF_RUN
    end = fr.EndOfRun.unpack(end_frame.payload)
    got = fr.unpack_events([f.payload for f in output])
    assert (end.run_id, end.events_out) == (9, len(got))
    assert (end.events_in == len(rec)) == fast and 0 < end.events_in <= len(rec)
    assert (got == simulate(DVS.to_network(), rec).events[:len(got)]).all()


def test_spikeflash_stream_shows_class_counts_and_saves_what_it_saw(tmp_path, capsys):
    from backend.app.cli import main

    rec = recording(DVS, 2000, seed=13)
    server = EmulatorServer(lambda: EmulatedChip(sensor=ReplaySensor(rec, fast=True)))
    DVS.save(tmp_path / "c.json")
    with ServedEmulator(server, "pty") as served:
        assert main(["stream", str(tmp_path / "c.json"), "--device", served.url, "-o", str(tmp_path / "c.json")]) == 1
        assert "is the input" in capsys.readouterr().err  # never onto an input
        assert main(["stream", str(tmp_path / "c.json"), "--device", served.url, "-o", str(tmp_path / "seen.npz")]) == 0
    expected = simulate(DVS.to_network(), rec).events
    out = capsys.readouterr().out
    core3 = expected[expected["layer"] == 3]  # the output core (the DVS stage is monitored too)
    counts = np.bincount(core3["channel"], minlength=DVS.to_network().layers[3].output_shape[0])
    assert "stream ended: 2000 sensor events in" in out
    assert "class " + "  ".join(f"{k}: {n}" for k, n in enumerate(counts)) in out  # the final line
    assert (load_events(tmp_path / "seen.npz") == expected).all()


def test_ctrl_c_in_spikeflash_stream_saves_what_it_saw_and_leaves_the_device_ready(tmp_path):
    rec = recording(LEAKY, 2000, seed=14, duration_us=600_000_000)  # 10 minutes at its recorded pace
    sensor = ReplaySensor(rec)
    LEAKY.save(tmp_path / "c.json")
    with ServedEmulator(EmulatorServer(lambda: EmulatedChip(sensor=sensor)), "pty") as served:
        cli = _cli("stream", str(tmp_path / "c.json"), "--device", served.url, "--output-layer", "5",
                   "-o", str(tmp_path / "seen.npz"))
        deadline = time.monotonic() + 60
        while sensor._next == 0:  # wait for the stream to begin (imports take seconds)
            assert time.monotonic() < deadline and cli.poll() is None, cli.stderr.read()
            time.sleep(0.05)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 0 and "stopped by Ctrl-C" in out, err
        seen = load_events(tmp_path / "seen.npz")
        assert (seen == simulate(LEAKY.to_network(), rec).events[:len(seen)]).all()  # a prefix, bit for bit
        with open_device(served.url) as device:
            device.flash(LEAKY)
            events = recording(LEAKY, 300, seed=15)
            device.reset()
            assert (device.run(events).events == simulate(LEAKY.to_network(), events).events).all()


def test_a_killed_streaming_host_leaves_nothing_for_the_next_session(tmp_path):
    rec = recording(LEAKY, 2000, seed=16, duration_us=600_000_000)
    sensor = ReplaySensor(rec)
    LEAKY.save(tmp_path / "c.json")
    with ServedEmulator(EmulatorServer(lambda: EmulatedChip(sensor=sensor)), "pty") as served:
        cli = _cli("stream", str(tmp_path / "c.json"), "--device", served.url, "--output-layer", "5")
        deadline = time.monotonic() + 60
        while sensor._next == 0:
            assert time.monotonic() < deadline and cli.poll() is None, cli.stderr.read()
            time.sleep(0.05)
        cli.kill()  # SIGKILL: no STOP; the next host's HELLO abandons the stream
        cli.communicate(timeout=30)
        with open_device(served.url) as device:
            device.flash(LEAKY)
            events = recording(LEAKY, 300, seed=17)
            device.reset()
            assert (device.run(events).events == simulate(LEAKY.to_network(), events).events).all()


def _cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen([sys.executable, "-m", "backend.app.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_dvs_filter_takes_a_threshold_from_0_and_sides_from_1_to_15():
    from backend.devices.stream import DVSFilter

    for mode in ("noise", "hot-pixel"):
        for size in ((1, 1), (15, 15), (1, 15)):
            assert DVSFilter(mode, 0, size).size == size
        for size in ((0, 3), (3, 0), (16, 3), (3, 16), (3,), (3, 3, 3)):
            with pytest.raises(ValueError, match=r"size=.*expected \(y, x\) neighbourhood sides in 1\.\.15"):
                DVSFilter(mode, 2, size)
    assert DVSFilter("low-pass", 0, (16, 0)).threshold == 0  # size is not used by low-pass
    for threshold in (-1, True, 2.0):
        with pytest.raises(ValueError, match=f"threshold={threshold!r}"):
            DVSFilter("low-pass", threshold)
    with pytest.raises(ValueError, match="mode='lowpass'"):
        DVSFilter("lowpass")
