"""``dlr-engine merge OUT_DIR``: join the tables of ``extract --shard I/N`` runs."""
from __future__ import annotations

import argparse

MAX_LISTED = 10
"""Tracks listed per problem; the rest are counted."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge", help="combine the manifests of sharded extract runs (--shard I/N)",
        description="Combine manifest.shard-I-of-N.parquet and outputs.shard-I-of-N.parquet in "
                    "OUT_DIR into manifest.parquet and outputs.parquet; report missing shards, "
                    "failed tracks and tracks found in several shards (exit code 1 if any).")
    parser.add_argument("out", metavar="OUT_DIR", help="the --out folder of the shard runs")
    parser.add_argument("--expect-shards", type=int, metavar="N",
                        help="the N of --shard I/N (default: as in the file names); shards "
                             "without a manifest are reported missing")
    parser.set_defaults(func=run)


def _listed(items: list[str]) -> str:
    more = f"\n  ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return "".join(f"\n  {item}" for item in items[:MAX_LISTED]) + more


def _by_advice(not_ok: list[tuple[str, str, str | None]]) -> dict[str, list[tuple]]:
    """The failed tracks grouped by what helps them: too-short tracks need --pad-short, a
    retry alone would fail them again."""
    from ..audio.segment import TOO_SHORT
    groups: dict[str, list[tuple]] = {}
    for track in not_ok:
        short = TOO_SHORT in (track[2] or "")
        advice = ("zero-pad them: rerun with --retry-failed --pad-short" if short
                  else "rerun with --retry-failed")
        groups.setdefault(advice, []).append(track)
    return groups


def run(args: argparse.Namespace) -> int:
    """Exit code 0 when every shard is present, every track ok and none duplicated."""
    from .merge import merge
    report = merge(args.out, args.expect_shards)
    print(f"merged {len(report.shards)} of {report.count} shards: {report.tracks} tracks "
          f"-> {report.manifest}")
    if report.missing_shards:
        shards = ", ".join(f"{i}/{report.count}" for i in report.missing_shards)
        print(f"missing shards (rerun them with --shard I/N): {shards}")
    for advice, tracks in _by_advice(report.not_ok).items():
        print(f"{len(tracks)} tracks not ok ({advice}):"
              + _listed([f"{track_id}: {status} {error or ''}".rstrip()
                         for track_id, status, error in tracks]))
    if report.duplicated:
        print(f"{len(report.duplicated)} tracks in several shards (were the shards run over "
              f"different file lists?):"
              + _listed([f"{track_id}: shards {shards}"
                         for track_id, shards in report.duplicated.items()]))
    return 0 if report.complete else 1
