"""Test tooling for device links: a fault-injecting relay and the device qualification suite's
network and checks."""
