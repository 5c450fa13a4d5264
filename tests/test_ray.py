"""The Ray engine (``dlr_engine.distributed``) on a local Ray instance of 2 CPUs started here:
the local engine's arrays (bit for bit, cpu backend), manifest and outputs table, failed files
recorded, resume across engines, ``dlr-engine extract --engine ray``; and, without Ray, its
stages run in this process."""
from __future__ import annotations

import argparse
import pickle
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import soundfile as sf
from test_engine import (LoudnessIntolerant, arrays, corpus, manifest, music, small_dlr, tagger,
                         write)

from dlr_engine import cli as dlr_cli
from dlr_engine import distributed
from dlr_engine.distributed import decode_track, deliver, extract_ray
from dlr_engine.engine import cli, extract, extraction
from dlr_engine.engine.extraction import Job

SECONDS = (3.0, 2.5, 5.0, 1.5, 4.0)
FAILED = {"broken.wav": "not a readable audio file", "truncated.wav": "truncated"}
OPTIONS = {"batch_size": 1, "segment_seconds": 2.0, "progress": False}
"""batch_size=1: the tagger's conv back-end gets the same batches from both engines (torch's
CPU kernels give a segment other bits in another batch; the DLR op does not)."""


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs whose workers force the cpu backend."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DLR_ENGINE_BACKEND", "cpu")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """5 clips, one file that is not audio and one truncated WAV (segments, then an error)."""
    root = tmp_path_factory.mktemp("ray") / "in"
    corpus(root, seconds=SECONDS)
    (root / "broken.wav").write_bytes(b"RIFF....WAVE")
    whole = write(root.parent / "whole.wav", 6.0, seed=9).read_bytes()
    (root / "truncated.wav").write_bytes(whole[:len(whole) * 2 // 3])
    return root


def _tables(out) -> tuple:
    timing_free = pq.read_table(out / "manifest.parquet").drop_columns(["seconds"])
    return timing_free, pq.read_table(out / "outputs.parquet")


def test_same_outputs_as_the_local_engine_and_resume(cluster, folder, tmp_path):
    options = {**OPTIONS, "model": tagger()}
    local = extract(folder, out=tmp_path / "local", workers=0, **options)
    summary = extract_ray(folder, tmp_path / "ray", **options)
    keys = ("ok", "failed", "skipped", "tracks", "audio_hours")
    assert [summary[key] for key in keys] == [local[key] for key in keys]
    assert (summary["ok"], summary["failed"]) == (len(SECONDS), len(FAILED))

    expected, found = arrays(tmp_path / "local"), arrays(tmp_path / "ray")
    assert len(found) == 2 * len(SECONDS)                      # dlr/ and embedding/
    assert found == expected
    manifest_local, outputs_local = _tables(tmp_path / "local")
    manifest_ray, outputs_ray = _tables(tmp_path / "ray")
    assert manifest_ray.equals(manifest_local)
    assert outputs_ray.equals(outputs_local)
    rows = {row["id"]: row for row in manifest(tmp_path / "ray")}
    for name, reason in FAILED.items():
        assert rows[name]["status"] == "failed" and reason in rows[name]["error"], rows[name]

    again = extract_ray(folder, tmp_path / "ray", **options)
    assert (again["ok"], again["failed"], again["skipped"]) == (0, 0, len(rows))
    local_rerun = extract(folder, out=tmp_path / "ray", workers=0, **options)
    assert local_rerun["skipped"] == len(rows)                 # either engine resumes the other
    retried = extract_ray(folder, tmp_path / "ray", retry_failed=True, **options)
    assert (retried["ok"], retried["failed"], retried["skipped"]) == (0, 2, len(SECONDS))
    assert arrays(tmp_path / "ray") == expected


def test_cli_engine_ray(cluster, folder, tmp_path, monkeypatch, capsys):
    """Batches of 4: the DLR op gives each segment the same bits in any batch."""
    monkeypatch.setattr(extraction, "_resolve_model", lambda spec: small_dlr())
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    common = [str(folder), "--batch-size", "4", "--segment-seconds", "1", "--no-progress",
              "--model", "test"]
    args = parser.parse_args(["extract", *common, "--out", str(tmp_path / "ray"), "--engine",
                              "ray"])
    assert args.func(args) == 0
    assert f"{len(SECONDS)} tracks extracted, {len(FAILED)} failed" in capsys.readouterr().out
    extract(folder, out=tmp_path / "local", model=small_dlr(), workers=0, batch_size=4,
            segment_seconds=1.0, progress=False)
    assert arrays(tmp_path / "ray") == arrays(tmp_path / "local")
    assert len(arrays(tmp_path / "ray")) == len(SECONDS)
    wrong = parser.parse_args(["extract", *common, "--out", str(tmp_path / "x"), "--engine",
                               "ray", "--workers", "2"])
    with pytest.raises(ValueError, match="--workers is for --engine local"):
        wrong.func(wrong)


class Recorder:
    """A sink that records what reaches it."""

    def __init__(self) -> None:
        self.appended: list[tuple[str, int]] = []

    def append(self, track, index, outputs) -> None:
        assert outputs["dlr"].shape[0] == 128
        self.appended.append((track.id, index))

    def finish(self, track):
        return track.id, "ok", track.starts

    def fail(self, track):
        return track.id, "failed", track.error


def test_stages_in_process_a_model_error_fails_only_its_track(tmp_path):
    """Decode, the model actor and the driver's delivery without Ray: a segment the model
    rejects fails its track with the reason; the other tracks complete."""
    quiet = write(tmp_path / "quiet.wav", 2.5)
    loud = music(2.0)
    loud[12000] = 0.95                                   # in the second 1 s segment
    sf.write(tmp_path / "loud.wav", loud, 8000)
    tasks = [(str(quiet), "quiet.wav"), (str(tmp_path / "loud.wav"), "loud.wav")]
    job = Job("dlr", LoudnessIntolerant(), device="cpu", batch_size=2, workers=0,
              segment_seconds=1.0, hop_seconds=None, tail="end", continuous=False,
              dtype="float32", pad_short=False)
    messages = [row[distributed.MESSAGE] for position, (path, _) in enumerate(tasks)
                for row in decode_track({"position": position, "path": path}, job.plan)]
    actor = distributed.ModelActor(job, "cpu")
    out = actor({distributed.MESSAGE: np.array(messages, dtype=object)})
    sink = Recorder()
    results = list(deliver([pickle.loads(data) for data in out[distributed.MESSAGE]], tasks,
                           sink))
    assert sink.appended == [("quiet.wav", 0), ("quiet.wav", 1), ("quiet.wav", 2),
                             ("loud.wav", 0)]
    assert results[0] == ("quiet.wav", "ok", [0, 8000, 12000])
    assert results[1][:2] == ("loud.wav", "failed")
    assert "model failed on segment 1: RuntimeError: too loud" in results[1][2]


def test_missing_ray_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'dlr-engine\[ray\]'"):
        distributed._import_ray()


def test_cli_without_ray_prints_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    sf.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 8000)
    code = dlr_cli.main(["extract", str(tmp_path), "--out", str(tmp_path / "out"), "--engine", "ray"])
    error = capsys.readouterr().err
    assert code == 2 and "pip install 'dlr-engine[ray]'" in error and "Traceback" not in error
