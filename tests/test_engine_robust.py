"""Issue 17's batch-wreckers and resume holes, and issue 18 rows 8, 11 and 13: each test here
failed on the engine before them. Tiny DLRs and 1-3 s clips keep them fast."""
from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from test_engine import corpus, manifest, music, small_dlr, tagger, write

from dlr_engine.engine import discover, extract, merge_cli
from dlr_engine.engine.merge import MergeReport

OPTIONS = dict(workers=0, segment_seconds=1.0, progress=False)
TAGGED = dict(OPTIONS, segment_seconds=2.0)
"""The tagger's back-end needs 9152 samples (1.14 s)."""


# -- discovery --------------------------------------------------------------------------------

class CountingScandir:
    """``os.scandir`` that counts listings per real folder and stops a runaway walk."""

    def __init__(self, limit: int = 200) -> None:
        self.real = os.scandir
        self.listed: list[str] = []
        self.limit = limit

    def __call__(self, path="."):
        if not isinstance(path, int):  # shutil.rmtree lists by descriptor
            self.listed.append(os.path.realpath(path))
        assert len(self.listed) < self.limit, "the walk does not end"
        return self.real(path)


def test_symlink_loops_are_walked_once(tmp_path, monkeypatch):
    """``up -> ..`` loops (and a second link to a real folder) list each real folder once and
    add no track twice; ids stay short."""
    root = tmp_path / "corpus"
    write(root / "a" / "x.wav", 0.2)
    write(root / "b" / "y.wav", 0.2)
    for loop in ("a/up", "b/up", "b/again"):
        os.symlink("..", root / loop)
    os.symlink(root / "a", root / "alias")
    scandir = CountingScandir()
    monkeypatch.setattr(os, "scandir", scandir)
    for source in (root, str(root / "**" / "*.wav")):
        scandir.listed.clear()
        found = discover(source)
        assert found.ids() == ["a/x.wav", "b/y.wav"]
        assert sorted(scandir.listed) == sorted({os.path.realpath(p) for p in scandir.listed})
    write(root / "b" / "z.flac", 0.2)
    both = discover([str(root / "**" / "*.wav"), str(root / "**" / "*.flac")])
    assert both.ids() == ["a/x.wav", "b/y.wav", "b/z.flac"]


def test_unreadable_folder_is_a_failed_row(tmp_path, monkeypatch):
    """A folder that cannot be listed (permission denied; simulated: tests may run as root)
    is a failed row with the reason; the rest completes; the run exits with the count."""
    corpus(tmp_path / "in", seconds=(1.0, 1.0))
    locked = tmp_path / "in" / "locked"
    write(locked / "hidden.wav", 1.0)
    real = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = extract(tmp_path / "in", out=tmp_path / "out", model=small_dlr(), **OPTIONS)
    assert (summary["ok"], summary["failed"]) == (2, 1)
    rows = {row["id"]: row for row in manifest(tmp_path / "out")}
    assert rows["locked"]["status"] == "failed"
    assert "folder not readable (Permission denied)" in rows["locked"]["error"]
    results = {r.id: r for r in extract(tmp_path / "in", model=small_dlr(), **OPTIONS)}
    assert results["locked"].status == "failed" and len(results) == 3


def test_fifo_is_failed_without_stalling(tmp_path):
    """A FIFO named like audio, found by a directory walk and by a glob: a failed row saying
    what it is, at once (it used to stall the run for 300 s)."""
    corpus(tmp_path, seconds=(1.0,))
    os.mkfifo(tmp_path / "a.wav")
    for source in (tmp_path, str(tmp_path / "*.wav")):
        results = {r.id: r for r in extract(source, model=small_dlr(), **{**OPTIONS,
                                                                          "workers": 1})}
        assert results["track0.wav"].status == "ok"
        assert "is a FIFO (named pipe), not an audio file" in results["a.wav"].error


def test_names_that_are_not_utf8_are_stored_losslessly(tmp_path, capsys):
    """``caf\\xe9.wav`` beside a good track: both ok, the tables readable, the exact bytes kept;
    a rerun resumes, even after the file is gone."""
    folder = tmp_path / "in"
    corpus(folder, seconds=(1.5,))
    name = os.path.join(os.fsencode(folder), b"caf\xe9.wav")
    sf.write(name, music(1.5), 8000)
    out = tmp_path / "out"
    summary = extract(folder, out=out, model=tagger(), **TAGGED)
    assert (summary["ok"], summary["failed"]) == (2, 0)
    rows = {row["id"]: row for row in manifest(out)}
    assert rows["caf\\xe9.wav"]["path_bytes"] == name
    assert rows["caf\\xe9.wav"]["path"] == os.fsdecode(folder) + "/caf\\xe9.wav"
    assert rows["track0.wav"]["path_bytes"] is None
    assert (out / "dlr" / "caf\\xe9.wav.npy").exists()
    ids = {row["id"] for row in pq.read_table(out / "outputs.parquet").to_pylist()}
    assert ids == {"caf\\xe9.wav", "track0.wav"}
    assert extract(folder, out=out, model=tagger(), **TAGGED)["skipped"] == 2
    os.remove(name)
    assert extract(folder, out=out, model=tagger(), **TAGGED)["skipped"] == 1
    in_memory = list(extract(folder, model=small_dlr(), **OPTIONS))
    assert [r.path for r in in_memory] == [str(folder / "track0.wav")]


def test_a_journal_with_a_name_that_is_not_utf8_is_merged(tmp_path):
    """The journal an older engine left after a track named ``caf\\xe9.wav`` (its path as a
    surrogate, which broke every later run into that folder) merges into readable rows."""
    corpus(tmp_path / "in", seconds=(1.0,))
    out = tmp_path / "out"
    out.mkdir()
    path = os.fsdecode(os.path.join(os.fsencode(tmp_path / "in"), b"caf\xe9.wav"))
    row = {"path": path, "id": "caf\udce9.wav", "size": 10, "mtime": 1.0, "status": "failed",
           "error": "old", "params_hash": "0"}
    (out / ".journal.jsonl").write_text(json.dumps({"row": row, "segments": []}) + "\n")
    summary = extract(tmp_path / "in", out=out, model=small_dlr(), **OPTIONS)
    assert summary["ok"] == 1
    rows = {row["id"]: row for row in manifest(out)}
    assert rows["caf\\xe9.wav"]["path_bytes"] == os.fsencode(path)
    assert rows["track0.wav"]["status"] == "ok"


# -- resume that verifies what it skips -------------------------------------------------------

def _counts(folder: Path, out: Path, **more) -> tuple[int, int, int]:
    summary = extract(folder, out=out, model=tagger(), **{**TAGGED, **more})
    return summary["ok"], summary["failed"], summary["skipped"]


def _outputs(out: Path) -> list[tuple]:
    return [(row["id"], row["segment"]) for row in
            pq.read_table(out / "outputs.parquet").to_pylist()]


@pytest.fixture
def done(tmp_path):
    """(input folder, out folder, its arrays, its outputs rows) after one complete run of 3
    tracks with the tagger (dlr and embedding arrays, probabilities per segment)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    corpus(folder, seconds=(2.0, 3.0, 1.5))
    assert _counts(folder, out) == (3, 0, 0)
    arrays = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.npy")}
    assert len(arrays) == 6
    return folder, out, arrays, _outputs(out)


def test_a_deleted_embedding_is_recomputed(done):
    folder, out, arrays, _ = done
    (out / "embedding" / "track1.wav.npy").unlink()
    assert _counts(folder, out) == (1, 0, 2)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.npy")} == arrays


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_a_lost_or_damaged_outputs_table_is_rebuilt(done, damage):
    folder, out, _, rows = done
    table = out / "outputs.parquet"
    if damage == "delete":
        table.unlink()
        assert _counts(folder, out) == (3, 0, 0)
    else:
        table.write_bytes(table.read_bytes()[:-40] + b"\0" * 40)
        with pytest.warns(RuntimeWarning, match="outputs.parquet is damaged"):
            assert _counts(folder, out) == (3, 0, 0)
        assert (out / "outputs.parquet.damaged").exists()
    assert _outputs(out) == rows
    assert _counts(folder, out) == (0, 0, 3)


def test_a_damaged_manifest_is_rebuilt(done):
    folder, out, arrays, rows = done
    (out / "manifest.parquet").write_bytes(b"PAR1 not a table PAR1")
    with pytest.warns(RuntimeWarning, match="manifest.parquet is damaged"):
        assert _counts(folder, out) == (3, 0, 0)
    assert len(manifest(out)) == 3 and _outputs(out) == rows
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.npy")} == arrays


def test_an_input_that_now_fails_loses_its_arrays(done):
    folder, out, _, _ = done
    (folder / "track1.wav").write_bytes(b"RIFF garbage now")
    assert _counts(folder, out) == (0, 1, 2)
    assert not list(out.rglob("track1.wav.npy"))
    assert "track1.wav" not in {track_id for track_id, _ in _outputs(out)}


# -- issue 18 rows 8, 11, 13 ------------------------------------------------------------------

def test_iterator_yields_in_input_order_with_label_names(tmp_path):
    """A long first track finishes after the short ones behind it; the iterator still gives
    the input order (``ordered=False``: as they finish), with the heads' class names."""
    corpus(tmp_path, seconds=(12.0, 1.5, 1.5, 1.5, 1.5))
    (tmp_path / "track3.wav").write_bytes(b"not audio")        # fails at once
    options = dict(model=tagger(), batch_size=4, **TAGGED)
    results = list(extract(tmp_path, **options))
    assert [r.id for r in results] == [f"track{i}.wav" for i in range(5)]
    finished = [r.id for r in extract(tmp_path, ordered=False, **options)]
    assert sorted(finished) == sorted(r.id for r in results)
    assert finished != [r.id for r in results]
    assert results[0].labels == {"style_logits": ["waltz", "tango", "jive"],
                                 "style_probs": ["waltz", "tango", "jive"]}
    assert results[0].outputs["style_probs"].shape[-1] == len(results[0].labels["style_probs"])


def _merge_cli(out: Path) -> int:
    parser = argparse.ArgumentParser()
    merge_cli.register(parser.add_subparsers())
    args = parser.parse_args(["merge", str(out)])
    return args.func(args)


def test_merge_advises_pad_short_for_too_short_tracks(tmp_path, capsys):
    corpus(tmp_path / "in", seconds=(1.0, 0.1))
    (tmp_path / "in" / "broken.wav").write_bytes(b"RIFF....WAVE")
    out = tmp_path / "out"
    for index in range(2):
        extract(tmp_path / "in", out=out, model=small_dlr(), shard=(index, 2), **OPTIONS)
    assert _merge_cli(out) == 1
    text = capsys.readouterr().out
    assert "1 tracks not ok (zero-pad them: rerun with --retry-failed --pad-short):\n  track1.wav" in text
    assert "1 tracks not ok (rerun with --retry-failed):\n  broken.wav" in text
    assert isinstance(MergeReport(2, [0, 1]).complete, bool)


def test_manifest_types_params_json_and_no_lock_file(tmp_path):
    """Integer columns read as pandas' nullable Int64; a failed track has no duration (a NaN
    file used to show 0.0 s); params.json holds the parameters of params_hash; the folder
    keeps no lock file."""
    corpus(tmp_path / "in", seconds=(1.0,))
    bad = music(1.0)
    bad[10] = np.nan
    sf.write(tmp_path / "in" / "nan.wav", bad, 8000, subtype="FLOAT")
    out = tmp_path / "out"
    summary = extract(tmp_path / "in", out=out, model=small_dlr(), **OPTIONS)
    frame = pd.read_parquet(out / "manifest.parquet")
    for column in ("channels", "segments", "sample_rate", "size", "output_rows"):
        assert str(frame[column].dtype) == "Int64", column
    rows = {row["id"]: row for row in manifest(out)}
    assert rows["nan.wav"]["duration"] is None and rows["nan.wav"]["channels"] == 1
    assert rows["track0.wav"]["duration"] == 1.0
    params = json.loads((out / "params.json").read_text())
    assert list(params) == [summary["params_hash"]]
    assert params[summary["params_hash"]]["plan"]["segment_samples"] == 8000
    assert params[summary["params_hash"]]["features"] == ["dlr"]
    assert sorted(p.name for p in out.iterdir()) == ["dlr", "manifest.parquet", "params.json"]


def test_what_is_bit_identical(tmp_path):
    """As ``extract`` documents: features are bit-identical whatever the batching; model
    outputs (embedding, probabilities) agree to rounding across batch sizes and are
    bit-identical in the same batches."""
    corpus(tmp_path, seconds=(2.0, 3.0, 1.5))
    runs = {size: {r.id: r for r in extract(tmp_path, model=tagger(), batch_size=size,
                                            **TAGGED)}
            for size in (1, 4)}
    again = {r.id: r for r in extract(tmp_path, model=tagger(), batch_size=4, **TAGGED)}
    for track_id, one in runs[1].items():
        four = runs[4][track_id]
        np.testing.assert_array_equal(one.features["dlr"], four.features["dlr"])
        for name in ("embedding", "style_probs", "tempo_probs"):
            np.testing.assert_allclose(one.outputs[name], four.outputs[name], rtol=1e-5,
                                       atol=1e-6)
            np.testing.assert_array_equal(four.outputs[name], again[track_id].outputs[name])
    assert "Model outputs (``embedding``, logits, probabilities) are\n    bit-identical for " \
           "the same batches" in extract.__doc__


def test_recursive_glob_under_a_missing_folder_matches_nothing(tmp_path):
    """A mistyped ``**`` glob is "no audio files found", not a failed row for a folder that
    does not exist."""
    from dlr_engine.engine.discover import discover

    with pytest.raises(FileNotFoundError, match="no audio files found"):
        discover(str(tmp_path / "no" / "such" / "**" / "*.wav"))
