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
    "dlr_engine.train.cli",
    "dlr_engine.demo_cli",
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
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
