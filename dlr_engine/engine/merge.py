"""Combine the tables of sharded runs (``extract(..., shard=(i, n))``, ``--shard I/N``) in one
output folder into ``manifest.parquet`` and ``outputs.parquet``, and say what is missing.

A shard writes ``manifest.shard-I-of-N.parquet`` and ``outputs.shard-I-of-N.parquet`` (see
``writer.py``); the arrays of all shards already share ``<name>/<id>.npy``. A track found in
several shards keeps the row of the lowest shard index.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io.atomic import write_atomic
from .writer import Store

SHARD_MANIFEST = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.parquet")
SHARD_COLUMN = "__shard"


@dataclass
class MergeReport:
    """What ``merge`` found: ``shards`` present (0-based indices) of ``count``; ``missing_shards``;
    ``not_ok`` [(id, status, error)] for tracks that failed or were skipped; ``duplicated``
    {id: [shard indices]}; ``tracks``: rows of the merged manifest."""

    count: int
    shards: list[int]
    missing_shards: list[int] = field(default_factory=list)
    not_ok: list[tuple[str, str, str | None]] = field(default_factory=list)
    duplicated: dict[str, list[int]] = field(default_factory=dict)
    tracks: int = 0
    manifest: str = ""

    @property
    def complete(self) -> bool:
        """Every shard present, every track ok, none in two shards."""
        return not (self.missing_shards or self.not_ok or self.duplicated)


def find_shards(out: str | os.PathLike) -> dict[int, int]:
    """{shard index: shard count} of the shard manifests in ``out``."""
    found = {}
    for path in glob.glob(os.path.join(os.fspath(out), "manifest.shard-*-of-*.parquet")):
        match = SHARD_MANIFEST.fullmatch(os.path.basename(path))
        if match:
            found[int(match[1])] = int(match[2])
    return found


def _read(path: str, index: int) -> pa.Table | None:
    if not os.path.exists(path):
        return None
    table = pq.read_table(path)
    return table.append_column(SHARD_COLUMN, pa.array([index] * len(table), pa.int64()))


def _first_shard_of_each_id(manifest: pa.Table) -> tuple[pa.Table, dict[str, list[int]]]:
    """Manifest rows of each id from its lowest shard, and {id: shards} of ids in several."""
    ids, shards = manifest["id"].to_pylist(), manifest[SHARD_COLUMN].to_pylist()
    seen: dict[str, list[int]] = {}
    for track_id, shard in zip(ids, shards):
        seen.setdefault(track_id, []).append(shard)
    keep = [min(seen[track_id]) == shard for track_id, shard in zip(ids, shards)]
    duplicated = {track_id: sorted(found) for track_id, found in seen.items() if len(found) > 1}
    return manifest.filter(pa.array(keep)), duplicated


def merge(out: str | os.PathLike, expect_shards: int | None = None) -> MergeReport:
    """Write ``out/manifest.parquet`` (sorted by path) and ``out/outputs.parquet`` (by id,
    segment) from the shard tables in ``out`` (atomically); return what is missing.

    expect_shards: the N of the run (default: the N in the shard file names).
    Raises ``FileNotFoundError`` when ``out`` holds no shard manifest and ``ValueError`` when
    the files disagree on N.
    """
    out = os.fspath(out)
    found = find_shards(out)
    if not found:
        raise FileNotFoundError(f"no manifest.shard-I-of-N.parquet in {out}: run the shards with "
                                f"--shard I/N --out {out} first")
    counts = set(found.values()) | ({expect_shards} if expect_shards else set())
    if len(counts) > 1:
        raise ValueError(f"shard files in {out} (and --expect-shards) disagree on the number of "
                         f"shards: {sorted(counts)}; remove the files of the other run")
    (count,) = counts
    manifests, outputs = [], []
    for index in sorted(found):
        store = Store(out, (index, count))
        manifests.append(_read(store.manifest_path, index))
        outputs.append(_read(store.outputs_path, index))
    manifest, duplicated = _first_shard_of_each_id(pa.concat_tables(manifests, promote_options="default"))
    kept = pc.binary_join_element_wise(manifest["id"], pc.cast(manifest[SHARD_COLUMN], pa.string()), "\0")
    manifest = manifest.drop_columns([SHARD_COLUMN]).sort_by([("path", "ascending")])
    store = Store(out)
    write_atomic(store.manifest_path, lambda tmp: pq.write_table(manifest, tmp))
    outputs = [table for table in outputs if table is not None]
    if outputs:
        table = pa.concat_tables(outputs, promote_options="default")
        key = pc.binary_join_element_wise(table["id"], pc.cast(table[SHARD_COLUMN], pa.string()), "\0")
        table = table.filter(pc.is_in(key, value_set=kept)).drop_columns([SHARD_COLUMN])
        table = table.sort_by([("id", "ascending"), ("segment", "ascending")])
        write_atomic(store.outputs_path, lambda tmp: pq.write_table(table, tmp))
    rows = manifest.select(["id", "status", "error"]).to_pylist()
    return MergeReport(
        count=count, shards=sorted(found), missing_shards=sorted(set(range(count)) - set(found)),
        not_ok=[(row["id"], row["status"], row["error"]) for row in rows if row["status"] != "ok"],
        duplicated=duplicated, tracks=len(rows), manifest=store.manifest_path)

