"""Devices: the one Device interface, opening devices by URL, and the device kinds."""
