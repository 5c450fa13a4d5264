"""``dlr-engine convert-tf PREFIX --list | --out model.safetensors``: inspect a TF checkpoint
or convert the published DLR(13) model to safetensors."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..io.tf_bundle import TFBundle, is_optimizer_slot
from .pretrained import load_tf_checkpoint, save_safetensors


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-tf", help="list or convert a TensorFlow checkpoint (the published DLR(13) model)",
        description="Read a TF tensor-bundle checkpoint without TensorFlow: list its variables, "
                    "or write the DLR(13) source-task model's weights to safetensors.")
    parser.add_argument("prefix", help="checkpoint prefix, e.g. reference/dlr13/model-523 "
                                       "(the path of the .index file without '.index')")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true",
                        help="print every variable with its shape and dtype")
    action.add_argument("--out", type=Path, metavar="FILE.safetensors",
                        help="write the converted model with its metadata")
    parser.add_argument("--optimizer", action="store_true",
                        help="with --list: include optimizer slots (*/Adam, beta1_power, ...)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        bundle = TFBundle(args.prefix)
        names = [n for n in bundle.names() if args.optimizer or not is_optimizer_slot(n)]
        width = max((len(n) for n in names), default=0)
        for name in names:
            print(f"{name:<{width}}  {str(bundle.shape(name)):<16} {bundle.dtype(name)}")
        hidden = len(bundle.names()) - len(names)
        if hidden:
            print(f"({hidden} optimizer slots not shown; add --optimizer to list them)")
        return 0
    model = load_tf_checkpoint(args.prefix)
    save_safetensors(model, args.out, {"source": f"TF checkpoint {Path(args.prefix).name} "
                                                 "(Jeong, Choi & Jeong 2017, DLR(13))"})
    print(f"wrote {args.out} ({sum(p.numel() for p in model.state_dict().values())} values)")
    return 0
