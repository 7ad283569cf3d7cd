"""The emulator: a software chip (the event-exact engine behind the device's state machine), the
wire-protocol server that makes it a real device on a pty or TCP port, and the registry of running
emulator processes."""
