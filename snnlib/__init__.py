"""snnlib: spiking layers with integer-exact time-stepped simulation, and an event-exact
simulator with the chip's integer semantics. Knows nothing of chips' cores or devices."""

from snnlib.events import EVENT_DTYPE, empty_events
from snnlib.network import (
    DVS_LAYER_ID,
    CoreLayer,
    Destination,
    DVSInput,
    IntegerNetwork,
    InvalidNetworkError,
)
