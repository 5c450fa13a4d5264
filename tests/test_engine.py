"""The extraction engine: discovery, pipeline, outputs, resume, and DESIGN §7's reliability
contract (one test per row). Small DLRs (dilation_base=4: 1216-sample minimum input) and
short clips keep it fast; the paper geometry appears where the receptive field matters."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from torch import nn

from dlr_engine.audio import load
from dlr_engine.engine import (cli, discover, extract, extraction, parse_shard, pipeline,
                               worker)
from dlr_engine.engine.pipeline import Batcher, Item, TrackState
from dlr_engine.engine.writer import NpyStream, Store
from dlr_engine.models.dlr_source import DLRSourceTaskNet
from dlr_engine.nn import DLR
from dlr_engine.ops import dlr_cpu

REPO = Path(__file__).resolve().parents[1]


def small_dlr(**options) -> DLR:
    torch.manual_seed(0)
    return DLR(dilation_base=4, **options)


def tagger() -> DLRSourceTaskNet:
    """DLR -> conv back-end -> 128-d embedding, 3 style and 4 tempo logits."""
    torch.manual_seed(0)
    model = DLRSourceTaskNet(n_styles=3, dlr=DLR(dilation_base=4)).eval()
    model.label_names = {"style_logits": ["waltz", "tango", "jive"]}
    return model


def music(seconds: float, rate: int = 8000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """(frames, channels) float32, the same continuous-time signal at any rate: decaying
    150 Hz bursts on a beat (tempo set by ``seed``) over two tones, all below 3 kHz so
    resampling to 8 kHz keeps it; the same in every channel; peak below 0.75."""
    t = np.arange(int(seconds * rate)) / rate
    period = 60.0 / (90 + 7 * seed)
    beat = np.exp(-30 * (t % period)) * np.sin(2 * np.pi * 150 * t)
    tones = np.sin(2 * np.pi * (300 + 20 * seed) * t) + 0.5 * np.sin(2 * np.pi * 1100 * t)
    mono = 0.4 * beat + 0.2 * tones * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t)) / 1.5
    return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)


def write(path: Path, seconds: float, rate: int = 8000, channels: int = 1, seed: int = 0,
          **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, music(seconds, rate, channels, seed), rate, **options)
    return path


def corpus(folder: Path, seconds=(3.0, 2.2, 5.0, 1.5)) -> list[Path]:
    return [write(folder / f"track{i}.wav", s, seed=i) for i, s in enumerate(seconds)]


def arrays(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.npy"))}


def manifest(out: Path, name: str = "manifest.parquet") -> list[dict]:
    return pq.read_table(out / name).to_pylist()


# -- discovery --------------------------------------------------------------------------------

def test_discover_globs_directories_manifests(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    files = [write(root / "a" / "x.wav", 0.2), write(root / "b" / "c" / "y.flac", 0.2),
             write(root / "z.ogg", 0.2)]
    (root / "notes.txt").write_text("not audio")
    expected = sorted(str(f) for f in files)

    found = discover(str(root / "**" / "*.{wav,flac,ogg}"))
    assert list(found.paths) == expected
    assert found.ids() == ["a/x.wav", "b/c/y.flac", "z.ogg"]
    assert list(discover(root).paths) == expected                    # directory: audio only
    assert list(discover(str(root / "**" / "*.{wav,flac}")).paths) == expected[:2]

    (tmp_path / "list.txt").write_text("# a comment\ncorpus/z.ogg\n\ncorpus/a/x.wav\n")
    assert list(discover(tmp_path / "list.txt").paths) == [str(files[0]), str(files[2])]
    (tmp_path / "list.csv").write_text(f"path,label\n{files[1]},1\n")
    assert list(discover(tmp_path / "list.csv").paths) == [str(files[1])]

    os.symlink(files[0], root / "alias.wav")                           # same file twice
    monkeypatch.chdir(root)
    again = discover(["a/x.wav", str(files[0]), "alias.wav", "z.ogg"])
    assert len(again.paths) == 2
    with pytest.raises(FileNotFoundError, match="no audio files"):
        discover(str(root / "*.mp3"))


def test_shards_cover_the_corpus_once(tmp_path):
    for i in range(7):
        write(tmp_path / f"t{i}.wav", 0.1)
    everything = discover(tmp_path)
    shards = [discover(tmp_path, shard=(i, 3)) for i in range(3)]
    joined = [path for shard in shards for path in shard.paths]
    assert sorted(joined) == list(everything.paths) and len(set(joined)) == 7
    assert all(shard.root == everything.root for shard in shards)     # ids do not depend on it
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "-1/2"):
        with pytest.raises(ValueError, match="I/N"):
            parse_shard(bad)


# -- pipeline pieces --------------------------------------------------------------------------

def test_batcher_packs_equal_lengths_across_tracks():
    tracks = [TrackState(i, f"t{i}", f"t{i}") for i in range(4)]
    batcher = Batcher(batch_size=3, max_pending=4)
    lengths = [10, 10, 7, 10, 5, 10, 10, 9]
    batches = []
    for order, length in enumerate(lengths):
        item = Item(tracks[order % 4], order, np.zeros(length, np.float32), 0.0, order)
        batches += [[it.order for it in batch] for batch in batcher.add(item)]
    batches += [[it.order for it in batch] for batch in batcher.flush()]
    # full groups of 10s; more than 4 waiting flushes the oldest group (the 7) early
    assert batches == [[0, 1, 3], [2], [4], [5, 6], [7]]
    assert batcher.pending == 0


def test_npy_stream_stacks_and_concatenates(tmp_path):
    rng = np.random.default_rng(0)
    items = [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(3)]
    stream = NpyStream(str(tmp_path / "a.tmp"), str(tmp_path / "out" / "a.npy"), "float16")
    for item in items:
        stream.append(item)
    stream.commit()
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "a.npy"),
                                  np.stack(items).astype(np.float16))
    stream = NpyStream(str(tmp_path / "b.tmp"), str(tmp_path / "b.npy"), "float32",
                       concat_frames=True)
    for item in (items[0], items[1][:, :2]):
        stream.append(item)
    stream.commit()
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"),
                                  np.concatenate([items[0], items[1][:, :2]], -1)[None])
    assert not list(tmp_path.glob("*.tmp"))


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    first = Store(tmp_path)
    first.open()
    with pytest.raises(RuntimeError, match="another dlr-engine run"):
        Store(tmp_path).open()
    first.close()
    Store(tmp_path).open()


# -- results ----------------------------------------------------------------------------------

def test_iterator_yields_features_and_model_outputs(tmp_path):
    paths = corpus(tmp_path, seconds=(5.0, 1.5))
    model = tagger()
    results = {r.id: r for r in extract(tmp_path, model=model, workers=0, batch_size=3,
                                        segment_seconds=2.0, progress=False)}
    long, short = results["track0.wav"], results["track1.wav"]
    assert long.status == short.status == "ok"
    np.testing.assert_allclose(long.segment_starts, [0.0, 2.0, 3.0])          # tail="end"
    assert long.features["dlr"].shape == (3, 128, model.dlr.frames(16000))
    assert short.features["dlr"].shape == (1, 128, model.dlr.frames(12000))  # one short window
    assert long.outputs["embedding"].shape == (3, 128)
    np.testing.assert_allclose(long.outputs["style_probs"].sum(-1), 1.0, rtol=1e-5)
    assert long.duration == 5.0 and long.sample_rate == 8000 and long.channels == 1
    audio, _ = sf.read(paths[0], dtype="float32")
    with torch.no_grad():
        expected = model(torch.from_numpy(audio[16000:32000])[None])
    np.testing.assert_allclose(long.features["dlr"][1], expected["dlr"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(long.outputs["tempo_logits"][1], expected["tempo_logits"][0],
                               rtol=1e-4, atol=1e-5)


def test_disk_layout_manifest_and_outputs_table(tmp_path):
    corpus(tmp_path / "in" / "sub", seconds=(4.0, 2.5))
    out = tmp_path / "out"
    summary = extract(str(tmp_path / "in" / "**" / "*.wav"), out=out, model=tagger(), workers=0,
                      segment_seconds=2.0, dtype="float16", progress=False)
    assert (summary["ok"], summary["failed"], summary["skipped"]) == (2, 0, 0)
    assert summary["audio_hours"] == pytest.approx(6.5 / 3600)
    dlr = np.load(out / "dlr" / "sub" / "track0.wav.npy")
    assert dlr.dtype == np.float16 and dlr.shape[:2] == (2, 128)
    assert np.load(out / "embedding" / "sub" / "track1.wav.npy").shape == (2, 128)
    rows = {row["id"]: row for row in manifest(out)}
    row = rows["sub/track0.wav"]
    assert row["status"] == "ok" and row["segments"] == 2 and row["segment_starts"] == [0.0, 2.0]
    assert row["size"] == os.path.getsize(row["path"]) and row["duration"] == 4.0
    assert len(row["params_hash"]) == 16 and row["seconds"] > 0
    table = pq.read_table(out / "outputs.parquet")
    assert {"id", "segment", "start", "style_waltz", "style_jive", "tempo_0", "tempo_3"} <= set(
        table.column_names)
    assert table.num_rows == 4
    assert not (out / ".journal.jsonl").exists() and not (out / ".tmp").exists()


def test_resume_retry_failed_and_overwrite(tmp_path):
    folder = tmp_path / "in"
    paths = corpus(folder, seconds=(2.0, 3.0))
    (folder / "broken.wav").write_bytes(b"RIFF....WAVE")
    out = tmp_path / "out"
    options = dict(out=out, model=small_dlr(), workers=0, segment_seconds=1.0, progress=False)

    def counts(**more):
        summary = extract(folder, **{**options, **more})
        return summary["ok"], summary["failed"], summary["skipped"]

    assert counts() == (2, 1, 0)
    first = arrays(out)
    assert counts() == (0, 0, 3)                                    # all done: nothing redone
    assert counts(retry_failed=True) == (0, 1, 2)
    os.utime(paths[0], ns=(1, 1))                                   # a changed file is redone
    assert counts() == (1, 0, 2)
    (out / "dlr" / "track1.wav.npy").unlink()                       # a lost output is redone
    assert counts() == (1, 0, 2)
    assert arrays(out) == first
    assert counts(segment_seconds=0.5) == (2, 1, 0)                 # other parameters: redone
    assert counts(segment_seconds=0.5, overwrite=True) == (2, 1, 0)
    assert len(manifest(out)) == 3


def test_spectral_representations(tmp_path):
    pytest.importorskip("dlr_engine.spectral")
    write(tmp_path / "a.wav", 3.0)
    (result,) = extract(tmp_path, representations="dlr,mel,tempogram", model=small_dlr(),
                        workers=0, segment_seconds=1.5, progress=False)
    assert set(result.features) == {"dlr", "mel", "tempogram"}
    for name, array in result.features.items():
        assert array.ndim == 3 and array.shape[0] == 2 and np.isfinite(array).all(), name
    assert result.features["mel"].shape[1] == 128


def test_cli_extract(tmp_path, monkeypatch, capsys):
    corpus(tmp_path / "in", seconds=(2.0, 2.0, 2.0))
    monkeypatch.setattr(extraction, "_resolve_model", lambda spec: small_dlr())
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["extract", str(tmp_path / "in" / "*.wav"), "--out", str(out),
                              "--workers", "0", "--segment-seconds", "1", "--shard", "1/2",
                              "--no-progress", "--model", "test"])
    assert args.func(args) == 0
    assert "1 tracks extracted, 0 failed" in capsys.readouterr().out
    assert [row["id"] for row in manifest(out, "manifest.shard-1-of-2.parquet")] == ["track1.wav"]
    with pytest.raises(SystemExit):
        parser.parse_args(["extract", "x", "--out", "y", "--shard", "2/2"])


# -- DESIGN §7: reliability -------------------------------------------------------------------

def test_bad_files_fail_with_reasons_while_others_complete(tmp_path):
    folder = tmp_path / "in"
    corpus(folder, seconds=(2.0, 2.0))
    flac = write(tmp_path / "full.flac", 3.0, rate=44100, channels=2).read_bytes()
    wav = write(tmp_path / "full.wav", 3.0, rate=44100, channels=2).read_bytes()
    (folder / "truncated.flac").write_bytes(flac[:len(flac) // 2])
    (folder / "truncated.wav").write_bytes(wav[:len(wav) // 3])
    corrupt = bytearray(flac)
    corrupt[len(flac) // 3:len(flac) // 3 + 2000] = bytes(2000)
    (folder / "corrupt.flac").write_bytes(bytes(corrupt))
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.mp3").write_text("this is a text file\n" * 50)
    os.symlink(folder / "gone.wav", folder / "dangling.wav")
    expected = {"truncated.flac": "decode failed", "truncated.wav": "truncated",
                "corrupt.flac": "decode failed", "empty.wav": "empty file",
                "text.mp3": "not a readable audio file", "dangling.wav": "file not found"}
    if os.geteuid() != 0:                                   # root reads any file
        (folder / "locked.wav").write_bytes(wav)
        (folder / "locked.wav").chmod(0)
        expected["locked.wav"] = "permission denied"
    paths = [str(p) for p in folder.iterdir()]
    summary = extract(paths, out=tmp_path / "out", model=small_dlr(), workers=0,
                      segment_seconds=1.0, progress=False)
    assert (summary["ok"], summary["failed"]) == (2, len(expected))
    rows = {row["id"]: row for row in manifest(tmp_path / "out")}
    for name, reason in expected.items():
        assert rows[name]["status"] == "failed" and reason in rows[name]["error"], rows[name]
    assert sorted(p.name for p in (tmp_path / "out" / "dlr").iterdir()) == [
        "track0.wav.npy", "track1.wav.npy"]


def test_silence_gives_finite_outputs(tmp_path):
    sf.write(tmp_path / "silence.wav", np.zeros((16000, 2), np.float32), 8000)
    (result,) = extract(tmp_path, model=tagger(), workers=0, segment_seconds=2.0, progress=False)
    assert result.status == "ok"
    for array in (*result.features.values(), *result.outputs.values()):
        assert np.isfinite(array).all()
    np.testing.assert_allclose(result.features["dlr"][0, :, 0],    # relu(bias), nothing else
                               torch.relu(tagger().dlr.bias).detach().flatten().numpy(), rtol=1e-6)


def test_nan_and_inf_input_is_rejected(tmp_path):
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        data = music(2.0)
        data[4000] = value
        sf.write(tmp_path / name, data, 8000, subtype="FLOAT")
    results = list(extract(tmp_path, model=small_dlr(), workers=0, segment_seconds=1.0,
                           progress=False))
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("NaN or Inf samples at 0.50 s" in r.error for r in results)


def test_tracks_shorter_than_the_receptive_field(tmp_path):
    """Paper geometry: 33211 samples (4.15 s at 8 kHz) give the first DLR frame."""
    write(tmp_path / "short.wav", 3.0)
    paper = DLR()
    (rejected,) = extract(tmp_path, model=paper, workers=0, progress=False)
    assert rejected.status == "failed"
    assert "shorter than the model's minimum input of 33211 samples" in rejected.error
    (padded,) = extract(tmp_path, model=paper, workers=0, pad_short=True, progress=False)
    assert padded.status == "ok" and padded.features["dlr"].shape == (1, 128, 1)


LONG_FILE_SCRIPT = """
import resource, sys, torch
from dlr_engine.engine import extract
from dlr_engine.nn import DLR
if __name__ == "__main__":
    torch.manual_seed(0)
    model = DLR(n_branches=2, channels=4, dilation_base=4)
    for path in sys.argv[2:]:
        summary = extract(path, out=sys.argv[1], model=model, workers=0, segment_seconds=10.0,
                          progress=False)
        assert summary["ok"] == 1, summary
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)   # peak so far, KB
"""


def test_long_file_in_bounded_memory(tmp_path):
    """Peak RSS after a 20-minute file is that after a 2-minute one: decode, resample, segment
    and writing all stream (decoding the whole file would add 150+ MB here)."""
    block = music(30.0, 16000, channels=2)
    paths = []
    for minutes in (2, 20):
        paths.append(tmp_path / f"long{minutes}.wav")
        with sf.SoundFile(paths[-1], "w", 16000, 2, "PCM_16") as file:
            for _ in range(2 * minutes):
                file.write(block)
    script = tmp_path / "run.py"
    script.write_text(LONG_FILE_SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "out"), *map(str, paths)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    after_short, after_long = (int(kb) / 1024 for kb in result.stdout.split())
    assert after_long - after_short < 30, (after_short, after_long)
    for minutes in (2, 20):
        assert np.load(tmp_path / "out" / "dlr" / f"long{minutes}.wav.npy").shape[0] == 6 * minutes


def test_mixed_rates_channels_formats_give_the_same_features(tmp_path):
    variants = {"a.wav": dict(rate=44100, channels=2), "b.flac": dict(rate=48000, channels=1),
                "c.ogg": dict(rate=22050, channels=2), "d.wav": dict(rate=8000, channels=1)}
    for name, options in variants.items():
        write(tmp_path / name, 3.0, **options)
    results = {r.id: r for r in extract(tmp_path, model=small_dlr(), workers=0,
                                        segment_seconds=3.0, progress=False)}
    reference = results["d.wav"].features["dlr"]
    for name, tolerance in (("a.wav", 2e-3), ("b.flac", 2e-3), ("c.ogg", 5e-2)):
        features = results[name].features["dlr"]
        assert features.shape == reference.shape
        error = np.linalg.norm(features - reference) / np.linalg.norm(reference)
        assert error < tolerance, (name, error)
        assert results[name].sample_rate == variants[name]["rate"]


KILL_SCRIPT = """
import sys, time, torch
from dlr_engine.engine import extract
from dlr_engine.nn import DLR
if __name__ == "__main__":
    torch.manual_seed(0)
    model = DLR(dilation_base=4)
    model.register_forward_pre_hook(lambda module, args: time.sleep(0.2))  # not in the hash
    extract(sys.argv[1], out=sys.argv[2], model=model, workers=1, batch_size=1,
            segment_seconds=1.0, progress=False)
"""


def test_killed_run_resumes_without_partial_or_duplicate_outputs(tmp_path):
    corpus(tmp_path / "in", seconds=(2.0,) * 8)
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "in"), str(out)],
                               cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("dlr/*.npy"))) < 3:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no outputs within 120 s"
        time.sleep(0.05)
    workers = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, "decode workers outlived the killed run"

    summary = extract(tmp_path / "in", out=out, model=small_dlr(), workers=0, batch_size=1,
                      segment_seconds=1.0, progress=False)
    assert summary["skipped"] >= 3 and summary["ok"] + summary["skipped"] == 8
    assert summary["failed"] == 0
    rows = manifest(out)
    assert sorted(row["id"] for row in rows) == [f"track{i}.wav" for i in range(8)]
    assert all(row["status"] == "ok" for row in rows)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted([Path("params.json"), Path("manifest.parquet")]
                           + [Path("dlr") / f"track{i}.wav.npy" for i in range(8)])
    fresh = {r.id: r.features["dlr"] for r in extract(tmp_path / "in", model=small_dlr(),
                                                      workers=0, segment_seconds=1.0,
                                                      progress=False)}
    for track_id, features in fresh.items():
        np.testing.assert_array_equal(np.load(out / "dlr" / f"{track_id}.npy"), features)


def test_same_corpus_twice_gives_identical_outputs(tmp_path):
    """Also across worker counts: batches depend on the track order only."""
    corpus(tmp_path / "in", seconds=(2.5, 1.3, 4.0, 2.0, 3.1))
    runs = []
    for index, workers in enumerate((0, 2)):
        out = tmp_path / f"out{index}"
        extract(tmp_path / "in", out=out, model=tagger(), workers=workers, batch_size=3,
                segment_seconds=2.0, progress=False)
        table = pq.read_table(out / "manifest.parquet").drop_columns(["seconds"])
        runs.append((arrays(out), table, pq.read_table(out / "outputs.parquet")))
    assert runs[0][0].keys() == runs[1][0].keys() and len(runs[0][0]) == 10
    assert runs[0][0] == runs[1][0]
    assert runs[0][1].equals(runs[1][1]) and runs[0][2].equals(runs[1][2])


def test_a_crashed_decoder_fails_only_its_track(tmp_path, monkeypatch):
    """The worker is killed while it waits on its 4-segment inbox, inside track 1."""
    monkeypatch.setattr(pipeline, "INBOX_AUDIO_SECONDS", 4.0)
    corpus(tmp_path / "in", seconds=(10.0,) * 5)
    results = extract(tmp_path / "in", model=small_dlr(), workers=1, batch_size=1,
                      segment_seconds=1.0, progress=False)
    first = next(results)
    (busy,) = [p for p in multiprocessing.active_children() if p not in worker.pooled_processes()]
    os.kill(busy.pid, signal.SIGKILL)
    rest = [first, *results]
    failed = [r for r in rest if r.status == "failed"]
    assert len(rest) == 5 and len(failed) == 1, [(r.id, r.error) for r in rest]
    assert "decoder process died" in failed[0].error


def test_a_stuck_decoder_is_stopped(tmp_path, monkeypatch):
    """A read that never returns (a hung network mount: here a decode thread held on an
    event) fails its track after the stall timeout; the worker is replaced and the rest
    completes."""
    corpus(tmp_path, seconds=(1.0, 1.0))
    write(tmp_path / "stuck.wav", 1.0)
    release = threading.Event()
    decode = worker.track_messages

    def hanging(track, path, plan):
        if path.endswith("stuck.wav"):
            release.wait()
        return decode(track, path, plan)

    monkeypatch.setattr(worker, "track_messages", hanging)
    monkeypatch.setattr(pipeline, "STALL_SECONDS", 2.0)
    try:
        results = {r.id: r for r in extract(tmp_path, model=small_dlr(), workers=0,
                                            segment_seconds=1.0, progress=False)}
    finally:
        release.set()
    assert [results[f"track{i}.wav"].status for i in range(2)] == ["ok", "ok"]
    assert "the decoder produced nothing for 2 s" in results["stuck.wav"].error


class LoudnessIntolerant(nn.Module):
    """The DLR, failing on segments whose peak exceeds 0.9."""

    def __init__(self) -> None:
        super().__init__()
        self.dlr = small_dlr()

    def forward(self, x):
        if (x.abs().amax(-1) > 0.9).any():
            raise RuntimeError("too loud")
        return {"dlr": self.dlr(x)}


def test_a_model_error_fails_the_track_not_the_run(tmp_path):
    corpus(tmp_path, seconds=(1.0, 1.0, 1.0))
    sf.write(tmp_path / "a_loud.wav", np.full(8000, 0.95, np.float32), 8000)   # sorts first
    for batch_size in (1, 4):
        results = {r.id: r for r in extract(tmp_path, model=LoudnessIntolerant(), workers=0,
                                            batch_size=batch_size, segment_seconds=1.0,
                                            progress=False)}
        assert [results[f"track{i}.wav"].status for i in range(3)] == ["ok"] * 3
        assert "model failed on segment 0: RuntimeError: too loud" in results["a_loud.wav"].error

    class Broken(LoudnessIntolerant):
        def forward(self, x):
            raise RuntimeError("broken model")

    with pytest.raises(RuntimeError, match="first 3 inputs, first with RuntimeError: broken"):
        list(extract(tmp_path, model=Broken(), workers=0, segment_seconds=1.0, progress=False))


def test_continuous_mode_equals_the_one_shot_dlr(tmp_path):
    path = write(tmp_path / "in" / "a.wav", 4.0, rate=16000)
    model = small_dlr()
    summary = extract(tmp_path / "in", out=tmp_path / "out", model=model, workers=0,
                      segment_seconds=0.5, continuous=True, progress=False)
    assert summary["ok"] == 1
    assert manifest(tmp_path / "out")[0]["segment_starts"] == [0.0]
    audio, _ = load(path, 8000)
    with torch.no_grad():
        expected = model(torch.from_numpy(audio)[None]).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "dlr" / "a.wav.npy"), expected)


@pytest.mark.skipif(not dlr_cpu.bf16_supported(), reason="this CPU has no AVX512_BF16")
def test_bfloat16_precision_run(tmp_path):
    corpus(tmp_path / "in", seconds=(3.0, 2.2))
    model = tagger()
    options = dict(model=model, workers=0, segment_seconds=2.0, progress=False)
    fp32 = {r.path: r for r in extract(tmp_path / "in", **options)}
    bf16 = {r.path: r for r in extract(tmp_path / "in", precision="bfloat16", **options)}
    assert model.dlr.precision == "float32"                       # the caller's model is kept
    for path, result in fp32.items():
        a, b = result.features["dlr"], bf16[path].features["dlr"]
        assert a.shape == b.shape and np.linalg.norm(b - a) <= 1e-2 * np.linalg.norm(a)
    out = tmp_path / "out"
    assert extract(tmp_path / "in", out=out, **options)["ok"] == 2
    summary = extract(tmp_path / "in", out=out, precision="bfloat16", **options)
    assert (summary["ok"], summary["skipped"]) == (2, 0)           # another parameters hash
    with pytest.raises(ValueError, match="precision"):
        extract(tmp_path / "in", out=out, precision="float16", **options)


def test_outputs_that_alias_the_input_batch_stay_intact(tmp_path):
    """A model returning a view of its input: the staging buffer of the batch is not reused
    under outputs still on their way to the writer."""
    class Echo(torch.nn.Module):
        min_samples = 1

        def forward(self, x):
            return {"echo": x[:, :16]}

    paths = corpus(tmp_path / "in", seconds=(3.0, 2.0, 4.0, 1.0))
    results = {Path(r.path).name: r for r in extract(tmp_path / "in", model=Echo(),
                                                     representations=(), workers=0,
                                                     batch_size=2, segment_seconds=1.0,
                                                     progress=False)}
    for path in paths:
        audio, _ = sf.read(path, dtype="float32")
        result = results[path.name]
        assert result.status == "ok"
        for row, start in zip(result.outputs["echo"], result.segment_starts):
            begin = round(start * 8000)
            np.testing.assert_array_equal(row, audio[begin:begin + 16])


def test_the_model_takes_every_core_once_nothing_is_left_to_decode(tmp_path, monkeypatch):
    """While decode threads work, the model runs on half the cores; the batches run after the
    last track is decoded (here: the flush at the end) get every core; the caller's torch
    thread count is restored."""
    monkeypatch.setattr(worker, "usable_cores", lambda: 4)
    monkeypatch.setattr(extraction, "usable_cores", lambda: 4)
    seen = []

    class Threads(torch.nn.Module):
        min_samples = 1

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return {"threads": torch.full((x.shape[0], 1), float(seen[-1]))}

    corpus(tmp_path / "in", seconds=(1.0, 1.0))
    before = torch.get_num_threads()
    results = list(extract(tmp_path / "in", model=Threads(), representations=(), workers=0,
                           batch_size=8, segment_seconds=1.0, progress=False))
    assert [r.status for r in results] == ["ok", "ok"]
    assert seen == [4]                    # one batch, run by the flush: decoding was over
    assert torch.get_num_threads() == before
    assert [model_threads(workers) for workers in (0, 3, 5)] == [(2, 4), (1, 4), (1, 4)]


def model_threads(workers: int) -> tuple[int, int] | None:
    """``Job.model_threads`` of a CPU job with ``workers`` (on the patched 4 usable cores)."""
    job = extraction.Job.__new__(extraction.Job)
    job.device, job.workers = torch.device("cpu"), workers
    return job.model_threads()
