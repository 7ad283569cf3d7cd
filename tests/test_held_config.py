"""A device tells which configuration it holds (docs/protocol.md, "Which configuration a device
holds"), so `spikeflash compare --no-flash` works against a device flashed by an earlier
command: emulator processes on a pty and on TCP keep it between commands, bit-exact; another
configuration, or none, is refused with `ConfigNotHeld` naming both digests and the fix."""

from __future__ import annotations

import copy
import re

import pytest

from backend.analysis.compare import compare
from backend.app.cli import main
from backend.devices import open_device
from backend.emulator.processes import emulator_on_pty, emulator_on_tcp
from backend.errors import ConfigNotHeld
from backend.files.events import save_events
from backend.protocol.config_image import encode_image, image_digest
from backend.testing.qualification import qualification_config, random_input
from snnlib import simulate

CONFIG = qualification_config("pooled_chain", 3)


def other_config():
    network = copy.deepcopy(CONFIG.to_network())
    network.layers[min(network.layers)].weights[0, 0, 0, 0] += 1
    return type(CONFIG).from_network(network, chip=CONFIG.chip)


@pytest.fixture(params=["pty", "tcp"])
def emulator_url(request):
    with (emulator_on_pty if request.param == "pty" else emulator_on_tcp)() as url:
        yield url


def test_compare_no_flash_uses_what_an_earlier_command_flashed(emulator_url, tmp_path, capsys):
    config, other, events = tmp_path / "c.json", tmp_path / "other.json", tmp_path / "in.npz"
    CONFIG.save(config)
    other_config().save(other)
    inputs = random_input(CONFIG.to_network(), 500, seed=3)
    save_events(events, inputs)
    assert main(["flash", str(config), "--device", emulator_url]) == 0
    held = image_digest(encode_image(CONFIG))
    assert f"digest {held[:16]})" in capsys.readouterr().out  # what the device will report
    assert main(["compare", str(config), "--events", str(events), "--device", emulator_url, "--no-flash"]) == 0
    n = len(simulate(CONFIG.to_network(), inputs).events)
    assert n and f"bit-exact: {n} events" in capsys.readouterr().out

    assert main(["compare", str(other), "--events", str(events), "--device", emulator_url, "--no-flash"]) == 1
    err = capsys.readouterr().err
    wanted = image_digest(encode_image(other_config()))
    assert f"holds configuration {held}, not the given one ({wanted})" in err
    assert "hint: flash it first (`spikeflash flash CONFIG --device URL`, or drop --no-flash)" in err

    with open_device(emulator_url) as device:  # the refusal changed nothing on the device
        device.adopt(CONFIG)
        device.reset()
        assert (device.run(inputs, rasters=False).events == simulate(CONFIG.to_network(), inputs).events).all()


def test_emu_holds_a_configuration_only_within_its_process(tmp_path, capsys):
    inputs = random_input(CONFIG.to_network(), 300, seed=4)
    with open_device("emu://") as device:
        device.flash(CONFIG)
        assert compare(CONFIG, device, inputs, flash=False).bit_exact
    with open_device("emu://") as fresh, pytest.raises(ConfigNotHeld, match=re.escape(
            f"emu://: the device holds no configuration, not the given one ({CONFIG.digest()})")) as caught:
        compare(CONFIG, fresh, inputs, flash=False)
    assert "emu:// lives in its process" in caught.value.hint
    CONFIG.save(tmp_path / "c.json")
    save_events(tmp_path / "in.npz", inputs)
    assert main(["compare", str(tmp_path / "c.json"), "--events", str(tmp_path / "in.npz"),
                 "--device", "emu://", "--no-flash"]) == 1
    assert "holds no configuration" in capsys.readouterr().err


def test_a_device_holding_another_configuration_is_refused_by_digest():
    with open_device("emu://") as device:
        device.flash(other_config())
        with pytest.raises(ConfigNotHeld, match=f"holds configuration {other_config().digest()}, "
                                                f"not the given one \\({CONFIG.digest()}\\)"):
            device.adopt(CONFIG)
        assert device.config.digest() == other_config().digest()  # still the one it holds
        with pytest.raises(TypeError, match="adopt\\(config\\): expected a mapper.ChipConfig"):
            device.adopt("c.json")
