"""``dlr-engine``: one command line, one subcommand per module.

Each module in ``SUBCOMMANDS`` exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> exit code``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = (
    "dlr_engine.info_cli",
    "dlr_engine.models.convert_cli",
    "dlr_engine.data.synth_cli",
    "dlr_engine.engine.cli",
    "dlr_engine.engine.merge_cli",
    "dlr_engine.train.cli",
    "dlr_engine.demo_cli",
    "dlr_engine.plot_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlr-engine", description="DLR, log-mel and tempogram features and the models "
                                       "around them: extract, train, convert, inspect.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        if not _is_input_error(exc):
            raise
        print(f"dlr-engine {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _is_input_error(exc: Exception) -> bool:
    """Errors whose message says what was wrong with the user's input or files: reported
    in one line, no traceback."""
    decode = sys.modules.get("dlr_engine.audio.decode")
    distributed = sys.modules.get("dlr_engine.distributed")
    kinds = ((ValueError, OSError) + ((decode.DecodeError,) if decode else ())
             + ((distributed.RayMissing,) if distributed else ()))
    return isinstance(exc, kinds)


if __name__ == "__main__":
    sys.exit(main())
