"""One error tree: every exception class of snnlib, mapper and backend derives from
:class:`snnlib.errors.SpikeflashError`, so the command line (and any user) catches all of
spikeflash with one ``except``."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import snnlib.errors
from backend.app.cli import main
from backend.devices import open_device
from backend.errors import UnsupportedURL
from snnlib.errors import SpikeflashError

PACKAGES = ("snnlib", "mapper", "backend")


def exception_classes() -> dict[str, type]:
    """Every exception class defined in a module of the three packages, by qualified name
    (warning categories are not errors and are left out)."""
    found = {}
    for package in PACKAGES:
        modules = [importlib.import_module(package)]
        modules += [importlib.import_module(info.name) for info in
                    pkgutil.walk_packages(modules[0].__path__, prefix=f"{package}.")]
        for module in modules:
            for name, obj in vars(module).items():
                if (inspect.isclass(obj) and issubclass(obj, BaseException)
                        and not issubclass(obj, Warning) and obj.__module__ == module.__name__):
                    found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_exception_class_of_every_module_derives_from_the_root():
    classes = exception_classes()
    # the walk reaches every package and the classes defined deep inside them
    assert {"snnlib.network.InvalidNetworkError", "mapper.errors.ConfigError",
            "backend.errors.RunTimeout", "backend.emulator.server.PeerClosed"} <= classes.keys()
    strays = sorted(name for name, cls in classes.items() if not issubclass(cls, SpikeflashError))
    assert strays == [], f"derive these from snnlib.errors.SpikeflashError: {strays}"


def test_the_root_keeps_each_hint_apart_from_the_message_and_the_docstring_examples_hold():
    assert doctest.testmod(snnlib.errors).failed == 0
    with pytest.raises(TimeoutError) as info:  # a device timeout is still a builtin TimeoutError
        from backend.errors import LinkTimeout

        raise LinkTimeout("no reply", hint="check the cable")
    assert (info.value.message, info.value.hint) == ("no reply", "check the cable")


def test_a_misspelt_scheme_is_an_unsupported_url_listing_the_known_schemes():
    with pytest.raises(UnsupportedURL, match=r"unknown scheme 'emul'.*emu://.*samna://.*socket://"):
        open_device("emul://")


def test_the_cli_reports_an_unsupported_url_as_one_line_plus_a_hint(tmp_path, capsys):
    from mapper import ChipConfig

    config = tmp_path / "config.json"
    ChipConfig("speck2f", {}).save(config)
    assert main(["flash", str(config), "--device", "emul://"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: open_device(url='emul://'): unknown scheme 'emul'")
    assert err[1].startswith("hint: pass a URL such as 'emu://'") and len(err) == 2
