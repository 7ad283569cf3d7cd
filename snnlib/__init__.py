"""snnlib: spiking layers with integer-exact time-stepped simulation, and an event-exact
simulator with the chip's integer semantics. Knows nothing of chips' cores or devices."""

from snnlib.events import (
    EVENT_DTYPE,
    InvalidEventsError,
    check_events,
    empty_events,
    events_to_raster,
    raster_to_events,
)
from snnlib.errors import MissingDependency, SpikeflashError
from snnlib.engine import ChipModelOptions, EventSimulator, SimulationResult, simulate
from snnlib.network import (
    DVS_LAYER_ID,
    CoreLayer,
    Destination,
    DVSInput,
    IntegerNetwork,
    InvalidNetworkError,
)
from snnlib.readout import READOUT_LAYER_ID, Readout
from snnlib.functional import (
    SURROGATE_SHAPES,
    IAFParameters,
    InputShapeError,
    InvalidParameterError,
    TensorTypeError,
    integrate_and_fire,
    quantize,
    stochastic_rounding,
    surrogate_gradient,
    threshold_reset,
    threshold_subtract,
)
from snnlib.layers import Cropping2dLayer, InputLayer, SpikingLayer, SpikingMaxPooling2dLayer
from snnlib.encoders import Img2SpikeLayer, Sig2SpikeLayer
from snnlib.ann import NeuromorphicReLU, QuantizeLayer, SumPool2d
from snnlib.conversion import from_torch, normalize_weights
from snnlib.synops import LayerActivity, SynOpCounter
from snnlib.integer_model import UnsupportedModelError, network_from_sequential
