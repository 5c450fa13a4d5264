"""``dlr-engine info``."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions and DLR backends: built, usable, why not")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from .info import main
    return main()
