"""``dlr-engine info``."""
from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info", help="versions and DLR backends: built, usable, why not",
        description="Print the versions of dlr-engine, torch and the optional libraries, which "
                    "kernels were built, which backends can run here and why the others cannot "
                    "(also `python -m dlr_engine info`).")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from .info import main
    return main()
