"""``dlr-engine merge``: two shards of a corpus merge into the manifest of an unsharded run;
missing shards, failed and duplicated tracks are reported with a non-zero exit code."""
from __future__ import annotations

import argparse

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_engine import corpus, manifest, tagger

from dlr_engine.engine import extract, merge_cli
from dlr_engine.engine.merge import merge

SHARDS = 2
OPTIONS = {"workers": 0, "batch_size": 4, "segment_seconds": 2.0, "progress": False}


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    merge_cli.register(parser.add_subparsers())
    args = parser.parse_args(["merge", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(input folder, sharded out folder, unsharded out folder) over 4 short clips."""
    root = tmp_path_factory.mktemp("merge")
    corpus(root / "in", seconds=(2.5, 2.0, 3.0, 1.5))
    model = tagger()
    for index in range(SHARDS):
        extract(root / "in", out=root / "sharded", model=model, shard=(index, SHARDS), **OPTIONS)
    extract(root / "in", out=root / "whole", model=model, **OPTIONS)
    return root / "in", root / "sharded", root / "whole"


def _columns(rows: list[dict]) -> list[tuple]:
    return [(row["id"], row["status"]) for row in rows]


def test_merged_shards_equal_an_unsharded_run(runs, capsys):
    _, sharded, whole = runs
    assert not (sharded / "manifest.parquet").exists()
    assert _run_cli(str(sharded), "--expect-shards", str(SHARDS)) == 0
    merged, reference = manifest(sharded), manifest(whole)
    ids = [row["id"] for row in merged]
    assert len(ids) == len(set(ids)) == 4
    assert _columns(merged) == _columns(reference)
    assert [row["path"] for row in merged] == [row["path"] for row in reference]
    outputs = pq.read_table(sharded / "outputs.parquet").to_pylist()
    expected = pq.read_table(whole / "outputs.parquet").to_pylist()
    assert [(row["id"], row["segment"]) for row in outputs] == [(row["id"], row["segment"])
                                                                for row in expected]
    assert "merged 2 of 2 shards: 4 tracks" in capsys.readouterr().out


def test_missing_shard_failed_and_duplicated_tracks_are_reported(runs, tmp_path, capsys):
    _, sharded, _ = runs
    out = tmp_path / "out"
    out.mkdir()
    first = pq.read_table(sharded / "manifest.shard-0-of-2.parquet")
    pq.write_table(first, out / "manifest.shard-0-of-2.parquet")
    report = merge(out)
    assert report.missing_shards == [1] and not report.complete
    assert report.tracks == len(first)
    assert _run_cli(str(out)) == 1
    assert "missing shards (rerun them with --shard I/N): 1/2" in capsys.readouterr().out

    rows = first.to_pylist()
    rows[0]["status"], rows[0]["error"] = "failed", "decode error"
    second = pq.read_table(sharded / "manifest.shard-1-of-2.parquet")
    both = pa.concat_tables([pa.Table.from_pylist(rows, schema=first.schema), second])
    pq.write_table(both, out / "manifest.shard-1-of-2.parquet")      # shard 0's tracks again
    report = merge(out)
    assert report.missing_shards == []
    assert report.duplicated == {row["id"]: [0, 1] for row in rows}
    assert report.tracks == len(first) + len(second)
    assert report.not_ok == []           # the lowest shard's row wins, and it was ok
    (out / "manifest.shard-0-of-2.parquet").unlink()
    report = merge(out, expect_shards=2)
    assert report.missing_shards == [0] and report.duplicated == {}
    assert report.not_ok == [(rows[0]["id"], "failed", "decode error")]
    with pytest.raises(ValueError, match="disagree"):
        merge(out, expect_shards=3)
