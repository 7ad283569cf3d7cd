"""backend: devices by URL (emulator, serial wire protocol, samna), event streaming, and
hardware-versus-simulation comparison. samna is imported only when a ``samna://`` device
is opened."""
