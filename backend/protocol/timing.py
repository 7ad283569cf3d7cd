"""Every timing default of the wire protocol and its devices, in one block (as esptool keeps
its timing constants together). Both ends (host session, emulator server) read them here.

A user on a slower link overrides them per device: ``open_device(url, baudrate=..., rto=...,
link_rate=..., handshake_timeout=...)``; ``Device.run(..., timeout=...)`` overrides one run's
deadline.
"""

#: Baud rate a serial port is opened with. A USB CDC-ACM board and a pty ignore it; a real UART
#: moves about ``baudrate / 10`` bytes/s (8 data bits, start and stop bits).
BAUDRATE = 115200

#: The slowest byte rate the deadlines allow for (bytes/s): the retransmission timeout grows by
#: the bytes in flight at this rate, and request and run deadlines by their transfer. 1 MB/s
#: suits USB CDC-ACM, ptys and TCP; a real UART at 115200 baud moves ~11.5 kB/s, about 87x
#: less, so pass ``link_rate=baudrate // 10`` for one.
LINK_RATE = 1_000_000

#: Base retransmission timeout (s): how long the oldest unacknowledged frame waits before the
#: window is sent again; doubles per retry. Also how often a HELLO is repeated.
RTO_S = 0.2

#: Retransmissions of one window before the link gives up with ``LinkTimeout``.
MAX_RETRIES = 3

#: Poll slice (s): the longest a waiting loop blocks on its port before it checks its deadline
#: or stop flag again (bounds shutdown latency; about 20 idle wake-ups per second).
POLL_SLICE_S = 0.05

#: How long the host waits for the device's GREETING after opening the port (s).
HANDSHAKE_TIMEOUT_S = 3.0

#: Deadline of a request other than a run (s), plus its transfer at ``LINK_RATE``.
REQUEST_FLOOR_S = 2.0

#: Default deadline of a run: this floor (s; covers e.g. an emulator compiling its engine), plus
#: the transfer both ways at ``LINK_RATE``, plus ``RUN_S_PER_EVENT`` per input event.
RUN_FLOOR_S = 10.0
RUN_S_PER_EVENT = 10e-6

#: How long a write to the serial port may block before pyserial raises (s).
WRITE_TIMEOUT_S = 5.0
