"""``dlr-engine``: one command line, one subcommand per module.

Each module in ``SUBCOMMANDS`` exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> exit code``.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import re
import sys

from . import __version__

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


def plain_text(text: str) -> str:
    """Help text without reStructuredText markup: ````x```` and ``:role:`x``` become ``'x'``."""
    return re.sub(r"(?::\w+:)?``?([^`]+)``?", r"'\1'", text)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter in plain text: every option's default is shown, also for
    options without a help text, except when the help already states it ("(default ...") or
    there is none (None, an unset flag)."""

    def add_argument(self, action: argparse.Action) -> None:
        if action.help is None and action.option_strings and _has_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        super().add_argument(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if _has_default(action) and not re.search(r"\(default:? |\bdefault: ", text):
            text = super()._get_help_string(action)
        return plain_text(text)

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))


def _has_default(action: argparse.Action) -> bool:
    return action.default not in (None, False, argparse.SUPPRESS)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with ``HelpFormatter``; its subcommand parsers inherit it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dlr-engine", description="DLR, log-mel and tempogram features and the models "
                                       "around them: extract, train, convert, inspect.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        importlib.import_module(module).register(subparsers)
    return parser


def device_problem(device: str | None) -> str | None:
    """Why ``--device device`` cannot run on this machine, in one line (None: it can, or the
    choice is automatic)."""
    if device in (None, "auto", "cpu"):
        return None
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError:
        return f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N"
    if parsed.type != "cuda":
        return None
    if not torch.cuda.is_available():
        why = ("this torch was built without CUDA" if torch.version.cuda is None
               else "no CUDA GPU is visible")
        return f"--device {device}: {why} (torch {torch.__version__}); use --device cpu or auto"
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        return (f"--device {device}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = device_problem(getattr(args, "device", None))
    if problem:
        print(f"dlr-engine {args.command}: error: {problem}", file=sys.stderr)
        return 2
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
