"""The ``spikeflash`` command line: help with examples, map / flash / run / doctor, and errors
as one line plus a hint (a traceback only with --debug)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.app.cli import main
from backend.errors import ModelFileError
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.files.events import load_events, save_events
from mapper import ChipConfig
from snnlib import SpikingLayer, SumPool2d, empty_events, simulate

SUBCOMMANDS = ["demo", "emulate", "devices", "doctor", "compare", "map", "flash", "run"]


def small_model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), SpikingLayer(threshold=1.0), SumPool2d(2),
        torch.nn.Conv2d(4, 2, 3, bias=False), SpikingLayer(threshold=1.0))
    with torch.no_grad():
        for conv in (model[0], model[3]):
            conv.weight.copy_(torch.rand(conv.weight.shape) * 0.6)
    return model


@pytest.fixture
def mapped(tmp_path) -> Path:
    """A small model saved as .pt and mapped with ``spikeflash map``; the config path."""
    torch.save(small_model(), tmp_path / "model.pt")
    assert main(["map", str(tmp_path / "model.pt"), "--input-shape", "1,8,8", "--trust-pickle"]) == 0
    return tmp_path / "model.json"


def input_events(config: ChipConfig, n: int = 200) -> np.ndarray:
    rng = np.random.default_rng(1)
    events = empty_events(n)
    events["t"] = np.sort(rng.integers(0, 20_000, n))
    events["layer"] = min(config.cores)  # the first core takes the input
    events["y"], events["x"] = rng.integers(0, 8, (2, n))
    return events


def test_help_lists_every_subcommand_with_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for name in SUBCOMMANDS:
        assert name in out
    assert "examples:\n  spikeflash demo" in out
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert f"examples:\n  spikeflash {name}" in capsys.readouterr().out


def test_map_writes_a_loadable_config_and_prints_the_fit_report(tmp_path, capsys):
    torch.save(small_model(), tmp_path / "model.pt")
    output = tmp_path / "out" / "config.json"
    output.parent.mkdir()
    assert main(["map", str(tmp_path / "model.pt"), "--input-shape", "1,8,8", "-o", str(output), "--trust-pickle"]) == 0
    out = capsys.readouterr().out
    config = ChipConfig.load(output)
    assert config.chip == "speck2f" and len(config.cores) == 2
    assert "memory (needed/available):" in out
    assert f"input events enter core(s) [0]; configuration written to {output}" in out


def test_map_of_a_model_that_does_not_fit_lists_every_problem_and_exits_2(tmp_path, capsys):
    too_big = torch.nn.Sequential(torch.nn.Conv2d(1, 300, 3, bias=False), SpikingLayer(),
                                  torch.nn.Conv2d(300, 4, 3, stride=7, bias=False), SpikingLayer())
    torch.save(too_big, tmp_path / "big.pt")
    assert main(["map", str(tmp_path / "big.pt"), "--input-shape", "1,64,64", "--trust-pickle"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'big.pt'} does not fit speck2f: 3 problem(s)\n")
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert sum(p.startswith("  - 0: fits no core's memory") for p in problems) == 1
    assert sum(p.startswith("  - 2: stride must be one of") for p in problems) == 2
    assert err.rstrip().endswith("hint: apply the fixes listed for each problem, then map again")
    assert not (tmp_path / "big.json").exists()


def test_run_writes_the_device_output_and_a_summary_per_layer(mapped, tmp_path, capsys):
    config = ChipConfig.load(mapped)
    events = input_events(config)
    save_events(tmp_path / "in.npz", events)
    capsys.readouterr()
    assert main(["run", str(mapped), "--events", str(tmp_path / "in.npz"), "--device", "emu://"]) == 0
    out = capsys.readouterr().out
    produced = load_events(tmp_path / "in_out.npz")
    expected = simulate(config.to_network(), events).events
    assert len(expected) > 0
    np.testing.assert_array_equal(produced, expected)
    core, name = next(iter(config.monitored_layer_names().items()))
    assert f"200 input events -> {len(expected)} output events" in out
    assert f"core {core:>2} {name:<16} {len(expected):>8} events from" in out


def test_flash_verifies_over_a_pty(mapped, capsys):
    with ServedEmulator(EmulatorServer(), "pty") as served:
        assert main(["flash", str(mapped), "--device", served.url]) == 0
    assert f"to {served.url}; read-back verified" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message, hint", [
    (["map", "missing.pt", "--input-shape", "1,8,8"], "error: model='missing.pt': no such file",
     "hint: check the path"),
    (["map", "model.onnx", "--input-shape", "1,8,8"], "error: model='model.onnx': unknown file type '.onnx'",
     "hint: rerun with --debug"),
    (["flash", "missing.json", "--device", "emu://"], "error:", "hint:"),
])
def test_errors_are_one_line_plus_a_hint(argv, message, hint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith(message) and err[1].startswith(hint)


def test_a_state_dict_is_refused_with_the_fix(tmp_path, capsys):
    torch.save(small_model().state_dict(), tmp_path / "weights.pt")
    assert main(["map", str(tmp_path / "weights.pt"), "--input-shape", "1,8,8"]) == 1
    assert "save the whole model with torch.save(model, path)" in capsys.readouterr().err


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        main(["--debug", "map", str(tmp_path / "missing.pt"), "--input-shape", "1,8,8"])


def test_bad_input_shape_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["map", "model.pt", "--input-shape", "1,8"])
    assert exit_.value.code == 2
    assert "expected C,H,W, three positive ints" in capsys.readouterr().err


def test_doctor_reports_versions_samna_and_a_bit_exact_self_test(capsys):
    status = main(["doctor"])
    out = capsys.readouterr().out
    for name in ("spikeflash", "torch", "numba", "pyserial", "samna"):
        assert any(line.startswith(name) for line in out.splitlines()), name
    assert "self-test   emulator on a pty (/dev/" in out and ": ok," in out
    assert status == (1 if "PERMISSION DENIED" in out else 0)
    assert "samna" not in sys.modules  # doctor inspects samna without importing it


def test_installed_console_script_runs_and_reports_errors_without_traceback(tmp_path):
    script = Path(sys.executable).parent / "spikeflash"
    if not script.exists():
        pytest.skip("the spikeflash console script is not installed (pip install -e .)")
    done = subprocess.run([str(script), "map", str(tmp_path / "none.pt"), "--input-shape", "1,8,8"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: model=") and "Traceback" not in done.stderr
    helped = subprocess.run([str(script), "run", "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "examples:\n  spikeflash run" in helped.stdout


def test_map_reads_a_nir_graph(tmp_path, capsys):
    import nir

    from mapper.nir_interchange import export_nir

    nir.write(tmp_path / "model.nir", export_nir(small_model(), (1, 8, 8)))
    assert main(["map", str(tmp_path / "model.nir")]) == 0  # the Input node declares (1, 8, 8)
    assert "memory (needed/available):" in capsys.readouterr().out
    assert len(ChipConfig.load(tmp_path / "model.json").cores) == 2


def test_map_without_a_known_input_shape_says_how_to_give_it(tmp_path, capsys):
    torch.save(small_model(), tmp_path / "model.pt")
    assert main(["map", str(tmp_path / "model.pt"), "--trust-pickle"]) == 1
    assert "pass --input-shape C,H,W" in capsys.readouterr().err


@pytest.mark.parametrize("argv, parsed", [
    (["emulate", "--tcp", "0"], ("tcp", 0)), (["emulate", "--tcp", "65535"], ("tcp", 65535)),
    (["map", "m.pt", "--input-shape", "1,1,1"], ("input_shape", (1, 1, 1))),
    (["map", "m.pt", "--slow-clock-us", "1"], ("slow_clock_us", 1)),
    (["map", "m.pt", "--dvs-input-size", "1,2"], ("dvs_input_size", (1, 2))),
    (["map", "m.pt", "--dvs-origin", "0,0"], ("dvs_origin", (0, 0))),
    (["stream", "c.json", "--device", "emu://", "--max-queued", "1"], ("max_queued", 1)),
])
def test_cli_numbers_are_accepted_down_to_their_lowest_value(argv, parsed):
    from backend.app.cli import build_parser

    assert getattr(build_parser().parse_args(argv), parsed[0]) == parsed[1]


@pytest.mark.parametrize("argv, expected", [
    (["emulate", "--tcp", "65536"], "a TCP port number in 0..65535"),
    (["emulate", "--tcp", "-1"], "a TCP port number in 0..65535"),
    (["emulate", "--tcp", "x"], "a TCP port number in 0..65535"),
    (["map", "m.pt", "--input-shape", "0,8,8"], "C,H,W, three positive ints"),
    (["map", "m.pt", "--input-shape", "1,8,8,8"], "C,H,W, three positive ints"),
    (["map", "m.pt", "--input-shape", "1,8,a"], "C,H,W, three positive ints"),
    (["map", "m.pt", "--slow-clock-us", "0"], "a positive int"),
    (["map", "m.pt", "--dvs-input-size", "1,0"], "H,W, two positive ints"),
    (["map", "m.pt", "--dvs-origin", "0,-1"], "Y,X, two ints >= 0"),
    (["stream", "c.json", "--device", "emu://", "--max-queued", "0"], "a positive int"),
])
def test_cli_numbers_below_their_lowest_value_are_argument_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and f"expected {expected}" in capsys.readouterr().err


@pytest.mark.parametrize("argv, complaint", [
    (["map", "m.pt", "--dvs-origin", "1,1"], "the --dvs-* options need --dvs"),
    (["map", "m.pt", "--dvs-monitor"], "the --dvs-* options need --dvs"),
    (["emulate", "--pty", "--fast"], "--fast needs --sensor FILE"),
])
def test_options_that_need_another_option_are_refused_before_anything_runs(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and complaint in capsys.readouterr().err


@pytest.mark.parametrize("text, target", [
    ("emu://", "emu://"), ("/dev/ttyACM0", "/dev/ttyACM0"),
    ("socket://host:5000@board_a", ("socket://host:5000", {"board_a": 1})),
    ("a@b@lab", ("a@b", {"lab": 1})), ("emu://@", "emu://@"), ("@lab", "@lab"),
])
def test_an_evaluate_device_is_a_url_optionally_pinned_to_a_ray_resource(text, target):
    from backend.app.cli import _device_target

    assert _device_target(text) == target


def test_the_dvs_flags_become_map_models_dvs_argument():
    from backend.app.cli import _dvs_option, build_parser
    from mapper import DVSConfig

    def option(*flags):
        return _dvs_option(build_parser().parse_args(["map", "m.pt", *flags]), (2, 32, 48))
    assert option() is False and option("--dvs") is True
    assert option("--dvs", "--dvs-monitor") == DVSConfig((2, 32, 48), monitor=True)
    assert option("--dvs", "--dvs-polarity", "off", "--dvs-mirror", "y", "--dvs-mirror", "diagonal",
                  "--dvs-input-size", "64,64", "--dvs-origin", "3,0") == DVSConfig(
        (2, 64, 64), origin=(3, 0), on_channel=False, off_channel=True, mirror_y=True, mirror_diagonal=True)
    assert option("--dvs", "--dvs-polarity", "both") == DVSConfig((2, 32, 48), on_channel=True, off_channel=True)


def test_an_output_that_is_an_input_or_lacks_its_folder_is_refused_and_any_other_passes(tmp_path, monkeypatch):
    from backend.app.cli import _check_output
    from backend.errors import OutputPathError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.npz").write_bytes(b"")
    with pytest.raises(OutputPathError, match="is the input in.npz"):
        _check_output(str(tmp_path / "in.npz"), "c.json", "in.npz")  # the same file by another path
    with pytest.raises(OutputPathError, match="does not exist"):
        _check_output("missing/out.npz", "in.npz")
    _check_output("out.npz", "c.json", "in.npz")
    _check_output(None, "in.npz")


def test_a_layer_summary_names_events_distinct_neurons_and_their_time_span():
    from backend.app.cli import _layer_summary

    events = empty_events(4)
    events["t"], events["channel"], events["y"], events["x"] = [5, 9, 12, 40], [0, 0, 1, 0], [1, 1, 1, 2], [3, 3, 3, 3]
    assert _layer_summary(2, "conv", events) == \
        "  core  2 conv                    4 events from 3 neuron(s), t 5..40 µs"
    assert _layer_summary(11, "out", events[:0]) == "  core 11 out              no events"


def test_a_device_error_without_its_own_hint_points_to_doctor_and_any_other_to_debug():
    from backend.app.cli import _hint
    from backend.errors import DeviceError

    assert "spikeflash doctor" in _hint(DeviceError("the port went away"))
    assert _hint(DeviceError("x", hint="replug it")) == "replug it"
    assert _hint(ModelFileError("x")) == "rerun with --debug for the full traceback"
