"""The backend's exception tree: everything a device can do wrong is a :class:`DeviceError`,
and every class here derives from :class:`snnlib.errors.SpikeflashError`.

Timeouts also subclass the builtin :class:`TimeoutError`, so ``except TimeoutError`` works.
A device error may carry the link/device ``counters`` at the moment it was raised, and, as
every spikeflash error, a ``hint`` that says what to do.
"""

from __future__ import annotations

from typing import Any, Optional

from snnlib.errors import SpikeflashError


class DeviceError(SpikeflashError):
    """Base class: talking to a device failed.

    Example scenarios:
      - any of the subclasses below; ``counters`` holds the link and device counters when the
        error was raised and ``hint`` what to try next
    """

    def __init__(self, message: str, *, counters: Optional[Any] = None, hint: Optional[str] = None):
        self.counters = counters
        super().__init__(message, hint=hint)


class UnsupportedURL(DeviceError, ValueError):
    """The device URL has a form no driver understands.

    Example scenarios:
      - a misspelt scheme such as ``open_device("emul://")``; the message lists the known ones
      - an empty string or a non-string URL
    """


class DeviceNotFound(DeviceError):
    """No device answers at that URL.

    Example scenarios:
      - a port path that does not exist (board unplugged, wrong ``/dev/ttyACM*`` number)
      - ``socket://host:port`` where nothing listens; a ``samna://`` devkit not plugged in
    """


class DeviceOpenError(DeviceError):
    """The device exists but cannot be opened.

    Example scenarios:
      - the port is held by another program (or another spikeflash)
      - this user may not open the port (Linux: not in the ``dialout`` group)
    """


class SamnaUnavailable(DeviceError):
    """A ``samna://`` device was asked for but the real samna library cannot be used.

    Example scenarios:
      - samna is not installed, or only PyPI's placeholder package is installed
    """


class ProtocolError(DeviceError):
    """The device sent something that breaks the wire protocol.

    Example scenarios:
      - a reply of the wrong type or too short for its layout
      - a device that does not greet with spikeflash's magic (another firmware on the port)
    """


class PartialFrame(ProtocolError):
    """The byte stream ended in the middle of a frame; ``received`` bytes of it had arrived.

    Example scenarios:
      - the port closed while a frame was being received
    """

    def __init__(self, received: int, **kw):
        self.received = received
        super().__init__(f"stream ended mid-frame after {received} bytes", **kw)


class VersionMismatch(ProtocolError):
    """The device speaks another protocol version or reports another chip than expected.

    Example scenarios:
      - an old board firmware after a spikeflash upgrade
      - flashing a configuration mapped for speck2f onto a board that reports another chip
    """


class ConfigImageError(ProtocolError, ValueError):
    """Bytes that are not a canonical configuration image, or a configuration whose values do
    not fit the image's fields (docs/protocol.md, "The configuration image").

    Example scenarios:
      - a truncated image, a wrong magic or format, non-zero reserved bytes or padding
      - a chip name longer than 16 bytes, or a section of the reserved readout kind
    """


class LinkTimeout(DeviceError, TimeoutError):
    """The device did not answer within the deadline.

    Example scenarios:
      - no greeting after opening the port (wrong port, or the board is not running firmware)
      - a reply lost again and again on a noisy link until the retries ran out
    """


class RunTimeout(LinkTimeout):
    """A run did not end with the device's end-of-run marker before the deadline.

    Example scenarios:
      - an input far longer than the deadline allows (pass a larger ``timeout``)
      - a device that stopped sending output mid-run; the message names the events read
    """


class DeviceReset(DeviceError):
    """The device restarted; its configuration and states are gone.

    Example scenarios:
      - a power glitch or a reset button press mid-run (seen as an unasked greeting or
        restarted sequence numbers); the next operation greets again and re-flashes
    """


class SessionEnded(DeviceReset):
    """The device ended the session: its retransmissions went unacknowledged until it gave up,
    and it said so with an unasked greeting. Unlike a restart, its configuration and states
    are kept; the next operation greets it again.

    Example scenarios:
      - the host stopped reading (a paused process, a full buffer) while the device was sending
    """


class DeviceDisconnected(DeviceError):
    """The port closed or the device vanished.

    Example scenarios:
      - the USB cable was pulled, or the emulator process ended
      - an operation on a device that was already closed
    """


class FlashError(DeviceError):
    """Writing a configuration to the device failed.

    Example scenarios:
      - the device refused the configuration as invalid
      - one of the verification failures below
    """


class FlashNotApplied(FlashError):
    """The device reports that nothing was written.

    Example scenarios:
      - an empty configuration was sent
    """


class FlashMismatch(FlashError):
    """The device applied a configuration whose digest differs from the one sent.

    Example scenarios:
      - bytes corrupted on the way that the frame checks did not catch
      - re-flashing after a device restart applied something else
    """


class NotFlashed(DeviceError):
    """An operation needs a configuration, but none has been flashed to this device.

    Example scenarios:
      - ``device.run(events)`` or ``device.read_states()`` before ``device.flash(config)``
    """


class ConfigNotHeld(NotFlashed):
    """A device was to be used with a configuration flashed earlier (``compare --no-flash``,
    :meth:`~backend.devices.base.Device.adopt`), but it does not hold that configuration.

    Example scenarios:
      - the device holds another configuration (the message names both digests)
      - it holds none: it restarted, or it is an ``emu://`` of another process
      - it cannot report what it holds (a samna devkit)
    """


class ModelFileError(SpikeflashError, ValueError):
    """A model file given to the command line cannot be loaded as a model.

    Example scenarios:
      - a path that does not exist, or a suffix other than ``.pt``/``.pth``/``.nir``
      - a ``.pt`` file that holds a ``state_dict`` instead of a whole ``nn.Module``
    """


class DatasetError(SpikeflashError, ValueError):
    """A dataset given to ``evaluate`` cannot be read as samples, or does not match the results
    file a run resumes.

    Example scenarios:
      - a folder without one subfolder per class holding ``.npy``/``.npz``/``.aedat4`` files
      - an object that is neither a Tonic-style dataset nor an iterable of ``(events, label)``
      - ``--resume`` with a results file written for another dataset or another config
    """


class EvaluationError(SpikeflashError):
    """A dataset evaluation cannot go on.

    Example scenarios:
      - every worker or device was lost (the samples done so far are in the results file;
        rerun with ``--resume``)
      - no output layer can be chosen for the prediction (pass ``output_layer``)
    """


class WorkerLost(SpikeflashError):
    """A worker process, Ray task or actor, or its device, stopped while running samples;
    the scheduler gives those samples to the other workers.

    Example scenarios:
      - a worker process killed (out of memory, a signal) or a Ray node gone
      - a device unplugged or an emulator process ended in the middle of a run
    """


class RasterTooLarge(SpikeflashError, ValueError):
    """The rasters a run would return do not fit the memory budget; raised before the run.

    Example scenarios:
      - absolute timestamps (e.g. 1.7e15 µs) with ``t0_us=0``: the rasters would span from 0
      - a long recording at a fine ``dt_us``; pass ``rasters=False`` (events only), a coarser
        ``dt_us`` or a larger ``max_raster_bytes``
    """


class LinkRestarted(DeviceError):
    """A new handshake restarted the link while a frame of the old session waited to be sent;
    the frame is dropped so nothing of an old session reaches a new one.

    Example scenarios:
      - a new host greets the emulator while it streams a run's output to a host that is gone
        (the emulator abandons that run; the exception never leaves the emulator)
    """


class OutputFlood(ProtocolError):
    """A device sent more output events in one run than the host keeps
    (``session.MAX_OUTPUT_EVENTS``); the message names the counts.

    Example scenarios:
      - a faulty board that streams events without end; the host stops reading it
    """


class OutputPathError(SpikeflashError, ValueError):
    """A command's output path cannot be used; checked before any long work.

    Example scenarios:
      - ``spikeflash run c.json --events in.npz -o in.npz`` (the output is an input)
      - ``-o`` in a folder that does not exist
    """


class NoSensor(DeviceError):
    """``Device.stream()`` on a device without a sensor of its own.

    Example scenarios:
      - an emulator started without ``--sensor FILE`` (or ``emu://`` opened without ``sensor=``)
      - a board whose firmware answers the wire protocol's ``STREAM`` with ``NO_SENSOR`` or, as a
        firmware without the stream mode does, ``UNKNOWN_FRAME``
    """


class StreamOverflow(DeviceError):
    """A stream's output arrived faster than the program took it and filled the host's bounded
    queue (``Device.stream(max_queued=...)``); the stream was stopped. ``counters`` say how
    many events were received and dropped.

    Example scenarios:
      - a loop over ``device.stream()`` that does slow work per batch while a busy scene streams
      - pass ``on_full="drop"`` to keep streaming and count the lost events instead
    """


class DeviceBusy(DeviceError):
    """A device operation while a stream is open on that device.

    Example scenarios:
      - ``device.run(...)`` inside ``with device.stream() as stream:``; close the stream first
    """
