"""``dlr-engine extract``: the engine on the command line."""
from __future__ import annotations

import argparse

from ..audio.segment import TAIL_POLICIES
from ..ops.dlr_op import PRECISIONS
from .discover import parse_shard

MAX_LISTED_FAILURES = 10
ENGINES = ("local", "ray")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract", help="extract DLR / mel / tempogram features and model outputs from audio",
        description="Decode, segment and run the model over a corpus; write one .npy per track "
                    "and representation, a manifest and an outputs table under --out. Rerunning "
                    "resumes where a previous run stopped.")
    parser.add_argument("paths", nargs="+",
                        help="audio files, directories, manifests (.txt/.csv/.parquet) or quoted "
                             "globs such as 'corpus/**/*.{mp3,flac}'")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--representations", default="dlr",
                        help="comma-separated: dlr, mel, tempogram (default: dlr)")
    parser.add_argument("--model", default="default",
                        help="'default' (shipped model), a weights path, or 'none' (spectral "
                             "representations only); append ':dlr' (default:dlr, "
                             "dlr13.safetensors:dlr) for the model's DLR front-end alone: DLR "
                             "features without running its back-end")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--batch-size", type=int, default=8, help="segments per model call")
    parser.add_argument("--workers", type=int, default=None,
                        help="decode processes (default: cores - 1, or 0 on 2 cores or fewer; "
                             "0: decode threads in this process, one per core plus one)")
    parser.add_argument("--segment-seconds", type=float, default=30.0)
    parser.add_argument("--hop-seconds", type=float, default=None,
                        help="distance between window starts (default: the segment length)")
    parser.add_argument("--tail", choices=TAIL_POLICIES, default="end",
                        help="samples after the last full window: end = one more window ending "
                             "at the track's end, pad = zero-padded window, drop = ignored")
    parser.add_argument("--continuous", action="store_true",
                        help="one DLR per track normalised by the track's peak (DLR only)")
    parser.add_argument("--shard", type=_shard, default=None,
                        help="I/N: process the I-th of N interleaved parts (0-based)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="the DLR's products: float32 (default); tf32 or bfloat16 on a "
                             "GPU (Triton tensor cores; features ~2e-4 / ~2e-3 from float32); "
                             "bfloat16 on CPUs with AVX512_BF16 (~2x faster, ~0.2 %%)")
    parser.add_argument("--pad-short", action="store_true",
                        help="zero-pad tracks shorter than the model's minimum input")
    parser.add_argument("--retry-failed", action="store_true",
                        help="retry tracks that failed in an earlier run")
    parser.add_argument("--overwrite", action="store_true", help="redo every track")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: this machine; ray: decode tasks and model actors on a Ray "
                             "cluster (pip install 'dlr-engine[ray]'), the same outputs")
    parser.add_argument("--address", default=None,
                        help="with --engine ray: the cluster (auto, ray://HEAD:10001; default: "
                             "start a local Ray instance)")
    parser.set_defaults(func=run)


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    """Exit code 0 unless every track of the run failed."""
    options = dict(
        representations=args.representations,
        model=None if args.model.lower() == "none" else args.model, device=args.device,
        batch_size=args.batch_size, segment_seconds=args.segment_seconds,
        hop_seconds=args.hop_seconds, shard=args.shard, dtype=args.dtype,
        pad_short=args.pad_short, progress=not args.no_progress, tail=args.tail,
        continuous=args.continuous, retry_failed=args.retry_failed, overwrite=args.overwrite,
        precision=args.precision)
    if args.engine == "ray":
        if args.workers is not None:
            raise ValueError("--workers is for --engine local: Ray schedules the decode tasks")
        from ..distributed import extract_ray
        summary = extract_ray(args.paths, args.out, address=args.address, **options)
    else:
        if args.address is not None:
            raise ValueError("--address is for --engine ray")
        from .extraction import extract
        summary = extract(args.paths, out=args.out, workers=args.workers, **options)
    print(format_summary(summary))
    return 1 if summary["failed"] and not summary["ok"] and not summary["skipped"] else 0


def format_summary(summary: dict) -> str:
    lines = [f"{summary['ok']} tracks extracted, {summary['failed']} failed, "
             f"{summary['skipped']} skipped (done earlier) of {summary['tracks']}: "
             f"{summary['audio_hours']:.3f} h of audio in {summary['wall_seconds']:.1f} s "
             f"({summary['x_realtime']:.0f}x realtime)",
             f"manifest: {summary['manifest']}"]
    failures = summary["failures"]
    for path, reason in failures[:MAX_LISTED_FAILURES]:
        lines.append(f"  failed: {path}: {reason}")
    if len(failures) > MAX_LISTED_FAILURES:
        lines.append(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more (status 'failed' "
                     f"in the manifest; rerun with --retry-failed to try them again)")
    return "\n".join(lines)
