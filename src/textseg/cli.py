"""The `textseg` command: one argparse parser made of the command groups' subcommands.

Each group module registers its commands with `add_commands(subparsers)`; COMMAND_GROUPS
lists them in the order `textseg --help` shows them. `main` runs the chosen command: its
return value is the exit code, and a FileNotFoundError, ValueError or RuntimeError becomes
one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from textseg import runtime_commands
from textseg.replay import commands as replay_commands
from textseg.tools import commands as tool_commands
from textseg.tools import import_command

# `textseg --help`: what each command is for, in one line.
DESCRIPTION = """textseg: the runtime's command line.

  textseg demo                 replay CamVid val through the node over DDS and score it
  textseg info MODEL.onnx      print what a model artifact carries
  textseg bake MODEL.onnx      build (or verify) the TensorRT engine for this machine
  textseg bench MODEL          backend and node throughput, latency and node overhead
  textseg overload MODEL       frames at 3x capacity: bounded latency, flat memory
  textseg quantize MODEL.onnx --calibration DIR   static int8 Q/DQ model (TensorRT or CPU)
  textseg profile MODEL.onnx   which operators ONNX Runtime's CPU time goes to
  textseg fp16 MODEL.onnx      float16 model for TensorRT's strongly typed builds
  textseg self-check MODEL     run (or --embed) the model's load-time label check
  textseg health-reference MODEL FRAMES   embed what the node's labels/health compares with
  textseg import THEIRS.onnx --classes a,b,c   any segmentation ONNX into a textseg model
  textseg bag-from-dataset DIR BAG   an image folder (+ labels) as a ROS 2 bag
  textseg replay BAG           play a bag through the node over DDS, score it, report
  textseg eval-offline BAG     the same scoring with the backend called directly (no ROS)
  textseg robustness           mIoU under camera corruptions x severity, through the node
"""

COMMAND_GROUPS = (
    runtime_commands.add_commands,  # demo, info, bake, bench, overload
    tool_commands.add_commands,  # quantize, profile, fp16, self-check
    import_command.add_commands,  # import: any segmentation ONNX into the contract
    replay_commands.add_commands,  # bag-from-dataset, replay, eval-offline
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textseg", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_commands in COMMAND_GROUPS:
        add_commands(sub)
    return parser


def _exit_on_sigterm() -> None:
    """A TERM (a supervisor, `timeout`, `kill`) unwinds like Ctrl-C: the `finally` blocks
    stop the node processes a command started instead of leaving them orphaned on DDS."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the `textseg` program, not called from Python
        _exit_on_sigterm()
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the results' "command"
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"textseg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
