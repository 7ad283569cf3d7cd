"""The ``spikeflash`` command line: one subcommand per job, errors as one line plus a hint."""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

from backend.errors import DeviceError, ModelFileError, OutputPathError
from snnlib.errors import SpikeflashError


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.dvs:
        from backend.app.dvs_demo import run_dvs_demo

        return run_dvs_demo()
    from backend.app.digits_demo import run_demo

    return run_demo()


def _cmd_emulate(args: argparse.Namespace) -> int:
    from backend.emulator.server import emulate

    return emulate("pty" if args.pty else "tcp", args.tcp or 0, args.sensor, args.fast)


def _cmd_devices(args: argparse.Namespace) -> int:
    from backend.devices import list_devices

    for found in list_devices():
        usb = f"  [{found.vid_pid}]" if found.vid_pid else ""
        print(f"{found.url:<28} {found.kind:<9} {found.description}{usb}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from backend.analysis.compare import compare
    from backend.devices import open_device
    from backend.files.events import load_events
    from mapper import ChipConfig

    config = ChipConfig.load(args.config)
    events = load_events(args.events)
    with open_device(args.device) as device:
        result = compare(config, device, events, flash=not args.no_flash, timeout=args.timeout)
    print(result)
    return 0 if result.bit_exact else 3


def _cmd_doctor(args: argparse.Namespace) -> int:
    import importlib.metadata

    from backend.devices.samna_support import samna_status

    problems = 0
    print(f"python      {sys.version.split()[0]}")
    for dist in ("spikeflash", "torch", "numba", "numpy", "pyserial"):
        try:
            print(f"{dist:<11} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            print(f"{dist:<11} MISSING (hint: pip install -e . in the repository)")
            problems += 1
    samna = samna_status()  # reads the installed files; never imports samna
    print(f"{'samna':<11} {samna.version or '-'} ({samna.state})" + (f"\n  hint: {samna.hint}" if samna.hint else ""))
    problems += _check_serial_ports()
    problems += _self_test()
    print("all checks passed" if not problems else f"{problems} problem(s) found")
    return 0 if not problems else 1


def _check_serial_ports() -> int:
    """Print every serial port and whether this user may open it; return the problem count."""
    import os

    from serial.tools import list_ports

    ports = sorted(p.device for p in list_ports.comports())
    if not ports:
        print("serial      no serial ports found (a board shows up as /dev/ttyACM* or /dev/ttyUSB*)")
    denied = [port for port in ports if not os.access(port, os.R_OK | os.W_OK)]
    for port in ports:
        print(f"serial      {port}: " + ("PERMISSION DENIED" if port in denied else "read/write ok"))
    if denied:
        print("  hint: add your user to the port's group (Linux: sudo usermod -aG dialout $USER), "
              "then log in again")
    return len(denied)


def _self_test() -> int:
    """Flash a small network to an emulator served on a pty, run random events through it and
    compare with the event-exact simulation; return 0 when bit-exact, else 1."""
    import numpy as np
    import torch

    from backend.analysis.compare import compare
    from backend.devices import open_device
    from backend.emulator.server import EmulatorServer, ServedEmulator
    from mapper import map_model
    from snnlib import SpikingLayer, empty_events

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), SpikingLayer(threshold=2.0))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(36.0).reshape(4, 1, 3, 3) % 5 - 1)
    mapping = map_model(model, (1, 8, 8))
    rng = np.random.default_rng(0)
    events = empty_events(300)
    events["t"] = np.sort(rng.integers(0, 10_000, len(events)))
    events["layer"] = mapping.input
    events["y"], events["x"] = rng.integers(0, 8, (2, len(events)))
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as device:
        result = compare(mapping.config, device, events)
    verdict = "ok" if result.bit_exact and result.n_expected else "FAILED"
    print(f"self-test   emulator on a pty ({served.url}): flash, run {len(events)} events: {verdict}, "
          f"{result.n_received} output events, {result.n_expected} expected")
    if verdict != "ok":
        print(f"  {result}\n  hint: reinstall with pip install -e . and rerun with --debug")
    return 0 if verdict == "ok" else 1


def _cmd_map(args: argparse.Namespace) -> int:
    from mapper import MappingError, map_model

    _check_output(args.output, args.model)
    model, declared_shape = _load_model(args.model, args.trust_pickle)
    input_shape = args.input_shape or declared_shape
    if input_shape is None:
        raise ModelFileError(f"{args.model}: the input shape is unknown; pass --input-shape C,H,W "
                             "(a .nir file may declare it in its Input node)")
    try:
        result = map_model(model, input_shape, args.chip, dvs=_dvs_option(args, input_shape),
                           slow_clock_period_us=args.slow_clock_us, readout=_readout_option(args))
    except MappingError as exc:
        print(f"error: {args.model} does not fit {exc.report.chip}: {len(exc.report.violations)} problem(s)",
              file=sys.stderr)
        print(exc.report, file=sys.stderr)
        print("hint: apply the fixes listed for each problem, then map again", file=sys.stderr)
        return 2
    output = args.output or str(Path(args.model).with_suffix(".json"))
    result.config.save(output)
    print(result.report)
    print(f"input events enter {result.describe_input()}; configuration written to {output}")
    return 0


def _readout_option(args: argparse.Namespace):
    """``map_model``'s ``readout`` argument from --readout THRESHOLD and --readout-average."""
    from snnlib import Readout

    return False if args.readout is None else Readout(args.readout, args.readout_average)


def _dvs_flags(args: argparse.Namespace) -> bool:
    """True when any --dvs-* option (beyond --dvs itself) is given."""
    return any((args.dvs_input_size, args.dvs_origin, args.dvs_polarity, args.dvs_mirror, args.dvs_monitor))


def _dvs_option(args: argparse.Namespace, input_shape):
    """``map_model``'s ``dvs`` argument from the --dvs* flags: False, True, or a DVSConfig
    template when a DVS option is given."""
    from mapper import DVSConfig

    if not args.dvs:
        return False
    if not _dvs_flags(args):
        return True
    size = args.dvs_input_size or tuple(input_shape)[1:]
    polarity = args.dvs_polarity or "both"
    mirror = set(args.dvs_mirror or ())
    return DVSConfig(input_shape=(2, *size), origin=args.dvs_origin or (0, 0),
                     on_channel=polarity in ("both", "on"), off_channel=polarity in ("both", "off"),
                     mirror_x="x" in mirror, mirror_y="y" in mirror, mirror_diagonal="diagonal" in mirror,
                     monitor=args.dvs_monitor)


def _cmd_flash(args: argparse.Namespace) -> int:
    from backend.devices import open_device
    from mapper import ChipConfig

    config = ChipConfig.load(args.config)
    with open_device(args.device) as device:
        device.flash(config)
        verified, digest = "flash-verify" in device.info().capabilities, device.digest(config)
    print(f"flashed {args.config} ({len(config.cores)} cores, digest {digest[:16]}) to "
          f"{args.device}; " + ("read-back verified" if verified else
                                "applied (this device cannot read its configuration back)"))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from backend.devices import open_device
    from backend.files.events import load_events, save_events
    from mapper import ChipConfig

    output = args.output or str(Path(args.events).with_name(Path(args.events).stem + "_out.npz"))
    _check_output(output, args.config, args.events)  # before the run, not after it
    config = ChipConfig.load(args.config)
    events = load_events(args.events)
    with open_device(args.device) as device:
        device.flash(config)
        device.reset()
        result = device.run(events, timeout=args.timeout, rasters=False)
    save_events(output, result.events)
    print(f"{len(events)} input events -> {len(result.events)} output events, written to {output}")
    for core, name in config.monitored_layer_names().items():
        print(_layer_summary(core, name, result.events[result.events["layer"] == core]))
    return 0


def _cmd_stream(args: argparse.Namespace) -> int:
    from backend.app.live import output_layer, stream_live
    from backend.devices import open_device
    from backend.files.events import save_events
    from mapper import ChipConfig

    _check_output(args.output, args.config)
    config = ChipConfig.load(args.config)
    layer = output_layer(config, args.output_layer)
    with open_device(args.device) as device:
        device.flash(config)
        device.reset()
        print(f"streaming from the sensor of {args.device}: counts per class of "
              f"{config.layer_display_names()[layer]} (layer {layer}); Ctrl-C stops", flush=True)
        events, counters, interrupted = stream_live(device, config, layer, seconds=args.seconds,
                                                    max_queued=args.max_queued)
    print(f"{'stopped by Ctrl-C' if interrupted else 'stream ended'}: " + (
        "before it began" if counters is None else f"{counters.sent} sensor events in, "
        f"{counters.received} output events received, {counters.dropped} dropped"))
    if args.output:
        save_events(args.output, events)
        print(f"{len(events)} output events written to {args.output}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from backend.analysis.evaluate import evaluate, sweep
    from backend.errors import EvaluationError

    configs, data = args.configs, args.data
    if args.no_simulate and not args.device:
        raise EvaluationError("--no-simulate without --device: nothing would run",
                              hint="add --device URL, or drop --no-simulate")
    if args.workers is not None and args.workers < 0:
        raise EvaluationError(f"--workers {args.workers}: expected 0 (this process) or more processes")
    devices = [_device_target(d) for d in args.device]
    if len(configs) == 1:
        paths = [args.results or Path(configs[0]).with_suffix(".results.jsonl")]
    else:
        paths = [(Path(args.results) if args.results else Path(c).parent) / (Path(c).stem + ".results.jsonl")
                 for c in configs]
    try:
        found = sweep(configs, data, results=paths, devices=devices, simulate=not args.no_simulate,
                      workers=args.workers, ray=args.ray, resume=args.resume,
                      output_layer=args.output_layer, timeout=args.timeout, progress=True)
    except KeyboardInterrupt:
        print(f"interrupted; the samples done are in {', '.join(map(str, paths))}: rerun with --resume "
              "to continue", file=sys.stderr)
        return 130
    for name, evaluation in zip(found.names, found.evaluations):
        print(f"{name}: {evaluation}\n  results: {evaluation.results}")
    if len(configs) > 1:
        print(f"\n{found.table()}\nbest: {found.names[found.best]}")
    return 3 if any(e.summary.n_diverged for e in found.evaluations) else 0


def _device_target(text: str):
    """``URL`` or ``URL@RESOURCE`` (a Ray resource that pins the device's actor to its host)."""
    url, at, resource = text.rpartition("@")
    return (url, {resource: 1}) if at and url and resource else text


def _check_output(output: str | None, *inputs: str) -> None:
    """Refuse an output path that is one of the ``inputs`` or whose folder does not exist,
    before any long work (outputs are written atomically: temporary file + rename)."""
    if output is None:
        return
    target = Path(output).resolve()
    for given in inputs:
        if Path(given).resolve() == target:
            raise OutputPathError(f"-o {output}: is the input {given}; writing it would destroy the input",
                                  hint="choose another output path")
    if not target.parent.is_dir():
        raise OutputPathError(f"-o {output}: the folder {target.parent} does not exist",
                              hint="create it first, or choose another output path")


def _layer_summary(core: int, name: str, events) -> str:
    if len(events) == 0:
        return f"  core {core:>2} {name:<16} no events"
    neurons = len({(c, y, x) for c, y, x in zip(events["channel"], events["y"], events["x"])})
    return (f"  core {core:>2} {name:<16} {len(events):>8} events from {neurons} neuron(s), "
            f"t {int(events['t'].min())}..{int(events['t'].max())} µs")


def _load_model(path: str, trust_pickle: bool = False):
    """``(model, declared input shape or None)`` from a program (``.pt2``: torch.export; a
    ``.pt``/``.pth`` TorchScript archive; both from ``mapper.save_program``), a NIR graph
    (``.nir``, whose Input node may declare the shape), or a torch ``nn.Module`` saved whole
    with ``torch.save`` (``.pt``/``.pth``). Programs and NIR load without running code from
    the file; a ``.pt`` pickle is loaded with ``weights_only=True``, and a whole pickled
    module (whose loading runs code from the file) only with ``trust_pickle``
    (``--trust-pickle``)."""
    import torch

    file = Path(path)
    if file.suffix not in (".pt", ".pth", ".pt2", ".nir"):
        raise ModelFileError(f"model={path!r}: unknown file type {file.suffix!r}; expected a .pt2 or "
                             ".pt TorchScript program (mapper.save_program), a .nir graph, or a .pt/.pth "
                             "file (torch.save(model, path))")
    if not file.is_file():
        raise ModelFileError(f"model={path!r}: no such file",
                             hint="check the path; relative paths start in the current directory")
    if file.suffix == ".nir":
        from mapper.nir_interchange import declared_input_shape, import_nir

        imported = import_nir(file)
        print(imported.report)
        return imported.model, declared_input_shape(file)
    from mapper.torch_programs import EXPORT_SUFFIX, is_torchscript, load_program

    if file.suffix == EXPORT_SUFFIX or is_torchscript(file):
        return load_program(file), None
    try:
        model = torch.load(file, weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if trust_pickle:
            raise ModelFileError(f"model={path!r}: torch.load cannot read it ({exc})") from exc
        raise ModelFileError(f"model={path!r}: holds pickled Python objects (a whole nn.Module); loading "
                             "them runs code from the file, which spikeflash does not do unasked",
                             hint="if you trust the file, pass --trust-pickle; or save the model as a "
                                  "program (mapper.save_program(model, shape, 'model.pt2')) or as NIR "
                                  "(mapper.export_nir), which load without running code") from None
    except Exception as exc:  # unpickling runs arbitrary code: any exception means "not loadable"
        raise ModelFileError(f"model={path!r}: torch.load cannot read it ({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelFileError(f"model={path!r}: holds a {type(model).__name__}, not a torch.nn.Module; save "
                             "the whole model with torch.save(model, path), not its state_dict")
    return model, None


def _ints(text: str, n: int, low: int, expected: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != n or min(values) < low:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
    return values


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a TCP port number in 0..65535")
    return port


def _shape(text: str) -> tuple[int, int, int]:
    return _ints(text, 3, 1, "C,H,W, three positive ints such as 1,8,8")


def _size(text: str) -> tuple[int, int]:
    return _ints(text, 2, 1, "H,W, two positive ints such as 128,128")


def _point(text: str) -> tuple[int, int]:
    return _ints(text, 2, 0, "Y,X, two ints >= 0 such as 16,0")


def _positive(text: str) -> int:
    return _ints(text, 1, 1, "a positive int such as 1000")[0]


EXAMPLES = {
    None: """spikeflash demo                                 train, map, flash and verify the digits demo
  spikeflash demo --dvs                           the same for moving shapes seen by a DVS sensor
  spikeflash doctor                               check the installation and the serial path
  spikeflash map model.pt --input-shape 1,8,8     map a saved torch model to speck2f
  spikeflash flash model.json --device /dev/ttyACM0
  spikeflash run model.json --events input.npz --device emu://
  spikeflash stream model.json --device /dev/ttyACM0          live counts from the device's sensor""",
    "demo": "spikeflash demo         # 8x8 digits\n  spikeflash demo --dvs   # shapes moving in front of a DVS sensor, through the DVS stage",
    "emulate": "spikeflash emulate --pty        # prints e.g. 'PTY /dev/pts/3'\n  spikeflash emulate --tcp 5000"
               "\n  spikeflash emulate --pty --sensor recording.aedat4 --fast",
    "devices": "spikeflash devices",
    "doctor": "spikeflash doctor",
    "compare": "spikeflash compare model.json --events input.npz --device /dev/ttyACM0\n"
               "  spikeflash compare model.json --events input.npz --device /dev/ttyACM0 --no-flash",
    "map": "spikeflash map model.pt2 --input-shape 1,8,8 -o model.json   # mapper.save_program: no pickle\n"
           "  spikeflash map model.pt --input-shape 1,8,8 -o model.json --trust-pickle\n  spikeflash map model.nir --input-shape 2,64,64 --chip speck2f"
           "\n  spikeflash map dvs_model.pt --input-shape 2,128,128 --dvs --slow-clock-us 1000"
           "\n  spikeflash map dvs_model.pt --input-shape 2,64,64 --dvs --dvs-input-size 128,128 --dvs-origin 32,32"
           " --dvs-polarity on --dvs-mirror x",
    "flash": "spikeflash flash model.json --device /dev/ttyACM0\n  spikeflash flash model.json --device socket://localhost:5000",
    "run": "spikeflash run model.json --events input.npz --device emu:// -o output.npz",
    "stream": "spikeflash stream model.json --device /dev/pts/3 -o seen.npz   # an emulator with --sensor\n"
              "  spikeflash stream model.json --device samna://speck2fdevkit:0 --seconds 30",
    "evaluate": "spikeflash evaluate model.json recordings/            # simulation, one process per core\n"
                "  spikeflash evaluate model.json recordings/ --device /dev/ttyACM0 --device /dev/ttyACM1\n"
                "  spikeflash evaluate a.json b.json recordings/ --ray auto   # a sweep on a Ray cluster\n"
                "  spikeflash evaluate model.json recordings/ --resume        # continue an interrupted run",
}


def _subcommand(sub, name: str, func, help_text: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog="examples:\n  " + EXAMPLES[name],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeflash",
        description="Simulate, map, flash and verify spiking networks on Speck / DYNAP-CNN chips.",
        epilog="examples:\n  " + EXAMPLES[None],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = _subcommand(sub, "demo", _cmd_demo, "run the end-to-end demo on the bundled emulator")
    demo.add_argument("--dvs", action="store_true", help="the DVS demo: synthetic event-camera recordings, "
                      "a model using the DVS stage (plots in demo_output/dvs/)")
    emulate = _subcommand(sub, "emulate", _cmd_emulate,
                          "serve the emulator over the wire protocol on a pty or TCP port")
    where = emulate.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="create a pseudo-terminal; prints 'PTY <path>'")
    where.add_argument("--tcp", type=_port, metavar="PORT", help="listen on 127.0.0.1:PORT (0: any); prints 'TCP <host>:<port>'")
    emulate.add_argument("--sensor", metavar="FILE", help="give the emulator a sensor replaying this recording "
                         "(.npy / .npz / .aedat4 / Tonic arrays; an .npz of several arrays plays one per stream, "
                         "in turn) for `spikeflash stream` and Device.stream()")
    emulate.add_argument("--fast", action="store_true", help="replay the --sensor recording as fast as the chip "
                         "takes it (default: at its recorded pace)")
    _subcommand(sub, "devices", _cmd_devices, "list emulators, serial ports and samna devkits to open")
    _subcommand(sub, "doctor", _cmd_doctor, "versions, samna, serial port permissions and a loopback "
                "self-test against an emulator on a pty (exit code 1 when a check fails)")
    comp = _subcommand(sub, "compare", _cmd_compare, "run events on a device and in simulation; report the "
                       "first divergence (exit code 3 when they differ)")
    _add_run_arguments(comp)
    comp.add_argument("--no-flash", action="store_true", help="use the configuration the device holds "
                      "(flashed by an earlier command); refused unless it is CONFIG (same digest)")
    mapping = _subcommand(sub, "map", _cmd_map, "map a model file to a ChipConfig JSON and print the fit "
                          "report (exit code 2 and every problem when it does not fit)")
    mapping.add_argument("model", help="a program from mapper.save_program (.pt2 torch.export, .pt "
                         "TorchScript), a NIR graph (.nir), or a torch.save'd nn.Module (.pt/.pth)")
    mapping.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                         help="shape of one input frame, e.g. 1,8,8 (optional for a .nir file "
                         "whose Input node declares it)")
    mapping.add_argument("--chip", default="speck2f", help="target chip (default: speck2f)")
    mapping.add_argument("-o", "--output", help="config JSON to write (default: the model path with .json)")
    mapping.add_argument("--trust-pickle", action="store_true", help="load a whole pickled nn.Module from "
                         "a .pt file (runs code from the file: only for files you trust); without it a .pt "
                         "file is loaded with torch.load(weights_only=True)")
    mapping.add_argument("--slow-clock-us", type=_positive, metavar="US", help="slow clock period in µs (leak "
                         "ticks; needed when a layer has a bias, usually the training time step)")
    mapping.add_argument("--readout", type=int, metavar="THRESHOLD", help="also send the output layer to the "
                         "readout layer (speck2e/2f), reporting a class when its moving average exceeds "
                         "THRESHOLD spikes per slow-clock tick (needs --slow-clock-us)")
    mapping.add_argument("--readout-average", type=int, choices=(1, 16, 32), default=16,
                         help="moving-average length of the readout in slow-clock ticks (default: 16)")
    dvs = mapping.add_argument_group("DVS stage", "input from the sensor (map_model(dvs=...)): the model's "
                                     "input pooling and cropping run in the DVS stage; one input channel "
                                     "merges the polarities")
    dvs.add_argument("--dvs", action="store_true", help="the model input comes from the DVS stage (layer 13)")
    dvs.add_argument("--dvs-input-size", type=_size, metavar="H,W",
                     help="sensor size the events have (default: the model input's H,W)")
    dvs.add_argument("--dvs-origin", type=_point, metavar="Y,X", help="top-left of the model's input window "
                     "on the sensor, in pooled pixels (default: 0,0)")
    dvs.add_argument("--dvs-polarity", choices=("both", "on", "off"), help="polarities passed on (default: both)")
    dvs.add_argument("--dvs-mirror", action="append", choices=("x", "y", "diagonal"),
                     help="mirror the window (repeat for several)")
    dvs.add_argument("--dvs-monitor", action="store_true", help="also read out the DVS stage's events (layer 13)")
    flash = _subcommand(sub, "flash", _cmd_flash, "write a ChipConfig JSON to a device and verify the read-back "
                        "(a samna devkit only applies it: samna reads no configuration back)")
    flash.add_argument("config", help="ChipConfig JSON file (from `spikeflash map`)")
    flash.add_argument("--device", required=True, help="device URL: emu://, a port such as /dev/ttyACM0, "
                       "socket://host:port or samna://speck2fdevkit:0")
    run = _subcommand(sub, "run", _cmd_run, "flash a config, run an event file through the device, write the "
                      "output events and print a summary per monitored layer")
    _add_run_arguments(run)
    run.add_argument("-o", "--output", help="output event file (.npz / .npy; default: <events>_out.npz)")
    live = _subcommand(sub, "stream", _cmd_stream, "flash a config and run it live on the device's own "
                       "sensor (a devkit's pixel array; `spikeflash emulate --sensor FILE`), showing the "
                       "output's counts per class until the sensor ends or Ctrl-C")
    live.add_argument("config", help="ChipConfig JSON file (from `spikeflash map`)")
    live.add_argument("--device", required=True, help="device URL with a sensor: a port or socket:// URL of "
                      "`spikeflash emulate --sensor FILE`, or samna://speck2fdevkit:0")
    live.add_argument("-o", "--output", help="also write every output event seen (.npz / .npy), "
                      "atomically, when the stream ends")
    live.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds (default: when the "
                      "sensor ends, or Ctrl-C)")
    live.add_argument("--output-layer", type=int, metavar="LAYER", help="layer whose channels are the classes "
                      "(default: the readout layer, else the monitored core that sends to no other)")
    live.add_argument("--max-queued", type=_positive, metavar="N",
                      help="most output events held for the display (default: Device.stream's, 2**20); past "
                      "it the stream stops with an error")
    ev = _subcommand(sub, "evaluate", _cmd_evaluate, "run configs over a dataset in simulation and/or on "
                     "devices: accuracy, confusion, synops, bit-exactness (exit code 3 when a device diverged)")
    ev.add_argument("configs", nargs="+", metavar="CONFIG", help="ChipConfig JSON file(s) (several: a sweep)")
    ev.add_argument("data", metavar="DATA", help="dataset folder: one subfolder per class holding .npy/.npz/.aedat4 recordings")
    ev.add_argument("--device", action="append", default=[], metavar="URL", help="run on this device too "
                    "(repeat for a farm; URL@RESOURCE pins it to a Ray resource)")
    ev.add_argument("--no-simulate", action="store_true", help="devices only, no event-exact simulation")
    ev.add_argument("--workers", type=int, metavar="N", help="local simulation processes (default: one per "
                    "core; 0: in this process)")
    ev.add_argument("--ray", metavar="ADDRESS", help="run on Ray: auto (the running cluster), an address, "
                    "or local")
    ev.add_argument("--results", metavar="PATH", help="results file (default: <config>.results.jsonl; a "
                    "folder for several configs)")
    ev.add_argument("--resume", action="store_true", help="continue the results file, skipping samples it holds")
    ev.add_argument("--output-layer", type=int, metavar="CORE", help="core whose spikes predict (default: "
                    "the monitored core that sends to no other)")
    ev.add_argument("--timeout", type=float, help="seconds per device run (default: scales with the input)")
    return parser


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of every subcommand that runs an event file through a configured device."""
    parser.add_argument("config", help="ChipConfig JSON file (from `spikeflash map`)")
    parser.add_argument("--events", required=True, help="input events: an event file (.npy / .npz), a Tonic (x, y, t, p) "
                        "sample saved as .npy / .npz, or an AEDAT4 recording (.aedat4)")
    parser.add_argument("--device", default="emu://", help="device URL (default: emu://)")
    parser.add_argument("--timeout", type=float, help="seconds for the device run (default: scales with the input)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "map" and not args.dvs and _dvs_flags(args):
        parser.error("the --dvs-* options need --dvs (the model input comes from the DVS stage)")
    if args.command == "emulate" and args.fast and args.sensor is None:
        parser.error("--fast needs --sensor FILE (the recording to replay)")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SpikeflashError as exc:  # anything else is a bug, and shows its traceback
        if args.debug:
            raise
        print(f"error: {exc.message}", file=sys.stderr)
        print(f"hint: {_hint(exc)}", file=sys.stderr)
        return 1


def _hint(exc: SpikeflashError) -> str:
    """What to try next for ``exc``: its own hint, else a general next step."""
    if exc.hint is not None:
        return exc.hint
    if isinstance(exc, DeviceError):
        return "run `spikeflash doctor` to check the installation and the serial path"
    return "rerun with --debug for the full traceback"


if __name__ == "__main__":
    sys.exit(main())
