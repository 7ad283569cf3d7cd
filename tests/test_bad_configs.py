"""One validator: the same bad configuration raises the same ConfigError, listing the same
problems, on every kind of device (emu://, the emulator served on a pty, a samna devkit),
before anything reaches the device; the device then still takes a good configuration."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from samna_standin import make_samna

from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import VersionMismatch
from backend.testing.qualification import qualification_config
from mapper import ChipConfig, ConfigError
from snnlib import Destination, InvalidNetworkError


def _edited(name: str, edit) -> ChipConfig:
    config = qualification_config(name)
    edit(config)
    return config


def _weight_300(c):
    c.cores[1].weights = c.cores[1].weights.astype(np.int64)
    c.cores[1].weights[2, 1, 0, 2] = 300


#: (config, the paths of its problems in order): network rules first, then the chip's
BAD_CONFIGS = {
    "cut beyond the pooled sensor": (
        _edited("dvs_input", lambda c: setattr(c.dvs, "cut", (200, 200))), ["dvs.cut"]),
    "origin beyond the pooled sensor": (
        _edited("dvs_input", lambda c: setattr(c.dvs, "origin", (8, 0))), ["dvs.origin"]),
    "int8 weight out of range": (_edited("pooled_chain", _weight_300), ["cores[1].weights[2, 1, 0, 2]"]),
    "destination to a missing core and a zero lower bound": (
        _edited("pooled_chain", lambda c: (setattr(c.cores[1], "destinations", [Destination(7)]),
                                           setattr(c.cores[4], "threshold_low", 0))),
        ["cores[1].destinations[0].layer", "cores[4].threshold_low"]),
    "stride the chip lacks": (
        _edited("single_core", lambda c: setattr(c.cores[0], "stride", (3, 1))), ["cores[0].stride"]),
}


@pytest.fixture(params=["emu", "pty", "samna"])
def device(request, monkeypatch):
    """An open device of each kind: in-process, a served emulator on a real pty, and a samna
    devkit of the stand-in samna."""
    if request.param == "emu":
        with open_device("emu://") as dev:
            yield dev
    elif request.param == "pty":
        with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as dev:
            yield dev
    else:
        monkeypatch.setitem(sys.modules, "samna", make_samna([("Speck2fDevKit", 1)]))
        with open_device("samna://speck2fdevkit:0") as dev:
            yield dev


def test_each_bad_config_is_refused_alike_on_every_device_and_a_good_one_still_flashes(device):
    for case, (config, paths) in BAD_CONFIGS.items():
        with pytest.raises(ConfigError) as err:
            device.flash(config)
        assert [p.path for p in err.value.problems] == paths, case
        assert isinstance(err.value, InvalidNetworkError) and device.config is None, case
        with pytest.raises(ConfigError) as loaded:  # the same problems as loading the file
            ChipConfig.from_json(config.to_json())
        assert loaded.value.problems == err.value.problems, case
    good = qualification_config("pooled_chain")
    device.flash(good)
    assert device.config is good


def test_a_config_for_another_chip_is_refused_alike_on_every_device(device):
    """A speck2e configuration onto a speck2f device: the host refuses it before sending
    anything on every device (it once flashed onto emu:// but not onto the pty emulator)."""
    assert device.info().chip == "speck2f"
    good = qualification_config("pooled_chain")
    other = ChipConfig.from_network(good.to_network(), chip="speck2e")
    with pytest.raises(VersionMismatch, match=f"{device.url}: the device is a speck2f, the "
                                              "configuration is for speck2e") as err:
        device.flash(other)
    assert err.value.hint == "map the model with chip='speck2f'" and device.config is None
    device.flash(good)
    assert device.config is good
