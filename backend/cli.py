"""The ``spikeflash`` command line: one subcommand per job, errors as one line plus a hint."""

from __future__ import annotations

import argparse
import sys

from backend.errors import DeviceError


def _cmd_demo(args: argparse.Namespace) -> int:
    from backend.demo import run_demo

    return run_demo()


def _cmd_emulate(args: argparse.Namespace) -> int:
    from backend.emulator_server import emulate

    return emulate("pty" if args.pty else "tcp", args.tcp or 0)


def _cmd_devices(args: argparse.Namespace) -> int:
    from backend.device import list_devices

    for found in list_devices():
        usb = f"  [{found.vid_pid}]" if found.vid_pid else ""
        print(f"{found.url:<28} {found.kind:<9} {found.description}{usb}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from backend.compare import compare
    from backend.device import open_device
    from backend.event_files import load_events
    from mapper import ChipConfig

    with open(args.config, encoding="utf-8") as f:
        config = ChipConfig.from_json(f.read())
    events = load_events(args.events)
    with open_device(args.device) as device:
        result = compare(config, device, events, flash=not args.no_flash, timeout=args.timeout)
    print(result)
    return 0 if result.bit_exact else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeflash",
        description="Simulate, map, flash and verify spiking networks on Speck / DYNAP-CNN chips.",
        epilog="examples:\n  spikeflash demo\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the end-to-end demo on the bundled emulator")
    demo.set_defaults(func=_cmd_demo)
    emulate = sub.add_parser("emulate", help="serve the emulator over the wire protocol on a pty or TCP port")
    where = emulate.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="create a pseudo-terminal; prints 'PTY <path>'")
    where.add_argument("--tcp", type=int, metavar="PORT", help="listen on 127.0.0.1:PORT (0: any); prints 'TCP <host>:<port>'")
    emulate.set_defaults(func=_cmd_emulate)
    devices = sub.add_parser("devices", help="list emulators, serial ports and samna devkits to open")
    devices.set_defaults(func=_cmd_devices)
    comp = sub.add_parser("compare", help="run events on a device and in simulation; report the first divergence "
                          "(exit code 3 when they differ)")
    comp.add_argument("config", help="ChipConfig JSON file (from the mapper)")
    comp.add_argument("--events", required=True, help="input events: .npy / .npz event file")
    comp.add_argument("--device", default="emu://", help="device URL (default: emu://)")
    comp.add_argument("--no-flash", action="store_true", help="run what the device holds instead of flashing")
    comp.add_argument("--timeout", type=float, help="seconds for the device run (default: scales with the input)")
    comp.set_defaults(func=_cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError, DeviceError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        print("hint: rerun with --debug for the full traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
