"""Streaming decode and segmentation (dlr_engine.audio)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from dlr_engine.audio import (AudioStream, DecodeError, Segmenter, TooShortError, chunk_bounds,
                              continuous_chunks, load)
from dlr_engine.audio.decode import _downmix
from dlr_engine.nn import DLR

RATE = 8000


def tone(seconds: float, rate: int, channels: int = 1, noise: float = 0.05,
         seed: int = 0) -> np.ndarray:
    """(frames, channels) float32: a sine per channel (220 Hz, 440 Hz, ...) plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    columns = [0.4 * np.sin(2 * np.pi * (220 * (c + 1)) * t) + noise * rng.standard_normal(len(t))
               for c in range(channels)]
    return np.stack(columns, 1).astype(np.float32)


@pytest.mark.parametrize("fmt, rate, channels", [("WAV", 44100, 2), ("FLAC", 48000, 1),
                                                 ("OGG", 22050, 2), ("MP3", 44100, 2)])
def test_decode_matches_librosa_load(tmp_path, fmt, rate, channels):
    """Same decoder, channel mean and soxr HQ as ``librosa.load(sr=8000)``: same samples,
    even with small blocks. Pure tones on purpose: with them, MP3 read through
    ``SoundFile.read`` in blocks goes wrong after each block (see ``_soundfile_blocks``)."""
    librosa = pytest.importorskip("librosa")
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, tone(3.3, rate, channels, noise=0.0), rate, format=fmt)
    expected, _ = librosa.load(path, sr=RATE)
    with AudioStream(path, RATE, block_frames=3000) as stream:
        audio = np.concatenate(list(stream))
    assert stream.info.sample_rate == rate and stream.info.channels == channels
    assert audio.dtype == np.float32 and audio.shape == expected.shape
    np.testing.assert_array_equal(audio, expected)


def test_block_size_does_not_change_output(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, tone(2.5, 44100, 2), 44100)
    outputs = []
    for block_frames in (257, 4096, 1 << 20):
        with AudioStream(path, RATE, block_frames=block_frames) as stream:
            outputs.append(np.concatenate(list(stream)))
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])


def test_downmix_is_channel_mean():
    block = tone(0.1, RATE, channels=3)
    np.testing.assert_allclose(_downmix(block), block.mean(axis=1), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(_downmix(block[:, :1]), block[:, 0])


def test_native_rate_passes_through(tmp_path):
    path = tmp_path / "clip.wav"
    data = tone(1.0, RATE)
    sf.write(path, data, RATE, subtype="FLOAT")
    audio, info = load(path, RATE)
    np.testing.assert_array_equal(audio, data[:, 0])
    assert info.duration == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(tmp_path, bad):
    data = tone(1.0, 16000)
    data[12345, 0] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(DecodeError, match="NaN or Inf samples at 0.77 s"):
        load(path, RATE)


def test_damaged_files_give_reasons(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, tone(3.0, 44100, 2), 44100)
    data = good.read_bytes()
    cases = {
        "truncated.flac": (data[:len(data) // 2], "decode failed"),
        "empty.wav": (b"", "empty file"),
        "text.mp3": (b"this is not audio\n" * 100, "not a readable audio file"),
    }
    wav = tmp_path / "full.wav"
    sf.write(wav, tone(3.0, 44100, 2), 44100)
    cases["truncated.wav"] = (wav.read_bytes()[:200000], "truncated: the data chunk declares")
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DecodeError, match=reason):
            load(tmp_path / name, RATE)
    with pytest.raises(DecodeError, match="file not found"):
        load(tmp_path / "missing.wav", RATE)
    with pytest.raises(DecodeError, match="is a directory"):
        load(tmp_path, RATE)


def test_pyav_reads_what_libsndfile_cannot(tmp_path):
    """AAC in MP4 goes through PyAV (``pip install av``); same downmix and resampler."""
    av = pytest.importorskip("av")
    data = tone(3.0, 44100, channels=2, noise=0.0)
    path = tmp_path / "clip.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data.T), format="fltp",
                                           layout="stereo")
        frame.sample_rate = 44100
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    audio, info = load(path, RATE)
    assert (info.codec, info.sample_rate, info.channels) == ("av:aac", 44100, 2)
    assert info.duration == pytest.approx(3.0, abs=0.1)                # plus encoder priming
    mono_rms = np.sqrt(np.mean(data.mean(axis=1) ** 2))
    assert np.sqrt(np.mean(audio ** 2)) == pytest.approx(mono_rms, rel=0.05)


def _segments(samples: np.ndarray, block: int, **options) -> list:
    segmenter = Segmenter(**options)
    out = []
    for start in range(0, len(samples), block):
        out.extend(segmenter.push(samples[start:start + block]))
    out.extend(segmenter.finish())
    return out


def test_windows_are_slices_of_the_stream_whatever_the_blocks():
    """Random window / hop / block sizes (the in-place buffer compacts and grows at arbitrary
    points): every window equals the track's samples there, zero-padded past its end."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        samples = rng.standard_normal(int(rng.integers(0, 400))).astype(np.float32)
        segmenter = Segmenter(int(rng.integers(1, 50)), int(rng.integers(1, 60)),
                              ("end", "pad", "drop")[trial % 3], pad_short=True)
        windows, start = [], 0
        while start < len(samples):
            block = int(rng.integers(1, 40))
            windows.extend(segmenter.push(samples[start:start + block]))
            start += block
        windows.extend(segmenter.finish())
        for window in windows:
            real = samples[window.start:window.start + len(window.samples)]
            assert np.array_equal(window.samples[:len(real)], real)
            assert not window.samples[len(real):].any()


@pytest.mark.parametrize("tail, expected_starts", [("end", [0, 30, 60, 65]),
                                                   ("pad", [0, 30, 60, 90]),
                                                   ("drop", [0, 30, 60])])
def test_tail_policies(tail, expected_starts):
    samples = np.arange(95, dtype=np.float32)
    segments = _segments(samples, 7, segment_samples=30, hop_samples=30, tail=tail)
    assert [s.start for s in segments] == expected_starts
    assert [s.index for s in segments] == list(range(len(expected_starts)))
    for segment in segments:
        assert len(segment.samples) == 30
        real = samples[segment.start:segment.start + 30]
        np.testing.assert_array_equal(segment.samples[:len(real)], real)
        assert not segment.samples[len(real):].any()


@pytest.mark.parametrize("block", [1, 13, 1000])
def test_overlapping_hops_independent_of_blocks(block):
    samples = np.random.default_rng(0).standard_normal(200).astype(np.float32)
    segments = _segments(samples, block, segment_samples=50, hop_samples=20, tail="end")
    assert [s.start for s in segments] == [0, 20, 40, 60, 80, 100, 120, 140, 150]
    for segment in segments:
        np.testing.assert_array_equal(segment.samples, samples[segment.start:segment.start + 50])


def test_short_tracks():
    samples = np.ones(40, np.float32)
    (only,) = _segments(samples, 16, segment_samples=100, hop_samples=100, min_samples=30)
    np.testing.assert_array_equal(only.samples, samples)       # one window of its own length
    with pytest.raises(TooShortError, match="pad_short=True"):
        _segments(samples, 16, segment_samples=100, hop_samples=100, min_samples=50)
    (padded,) = _segments(samples, 16, segment_samples=100, hop_samples=100, min_samples=50,
                          pad_short=True)
    assert len(padded.samples) == 50 and padded.samples[:40].all() and not padded.samples[40:].any()


@pytest.mark.parametrize("samples", [1216, 5000, 9473])
def test_continuous_chunks_equal_one_shot_dlr(samples):
    """Chunks overlap by the receptive field, start on pool multiples: concatenated they give
    exactly the DLR of the whole track."""
    torch.manual_seed(0)
    module = DLR(dilation_base=4, preprocess=None)
    x = torch.rand(samples)
    bounds = chunk_bounds(samples, module.receptive_field, module.config.pool, chunk_frames=3)
    assert all(start % module.config.pool == 0 for start, _ in bounds)
    chunks = continuous_chunks(lambda a, b: x[a:b].numpy(), samples, module.receptive_field,
                               module.config.pool, 3, module.min_samples)
    with torch.no_grad():
        pieces = [module(torch.from_numpy(chunk.samples)[None]) for chunk in chunks]
        whole = module(x[None])
    assert torch.equal(torch.cat(pieces, dim=-1), whole)


def test_continuous_short_track():
    samples = np.ones(100, np.float32)
    with pytest.raises(TooShortError):
        list(continuous_chunks(lambda a, b: samples[a:b], 100, 961, 256, 4, 1216))
    (chunk,) = continuous_chunks(lambda a, b: samples[a:b], 100, 961, 256, 4, 1216, pad_short=True)
    assert len(chunk.samples) == 1216 and chunk.samples[:100].all()


# -- issue 17: truncated Ogg, WAV size fields, names and special files -------------------------

@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_truncated_ogg_is_failed(tmp_path, subtype):
    """libsndfile takes an Ogg file's length from its last page, so a cut file decodes
    'completely': the end-of-stream page is checked instead, for a cut inside a page and at
    a page boundary."""
    path = tmp_path / "full.ogg"
    sf.write(path, tone(12.0, RATE, noise=0.0), RATE, format="OGG", subtype=subtype)
    data = path.read_bytes()
    assert len(load(path, RATE)[0]) == 12 * RATE
    last_page = data.rfind(b"OggS")
    for name, end, reason in (("mid.ogg", len(data) // 2, "ends inside an Ogg page"),
                              ("page.ogg", last_page, "not its end-of-stream page")):
        (tmp_path / name).write_bytes(data[:end])
        with pytest.raises(DecodeError, match=f"truncated: .*{reason}"):
            load(tmp_path / name, RATE)


def _with_data_size(source, target, size: int) -> None:
    data = bytearray(source.read_bytes())
    at = data.find(b"data")
    data[at + 4:at + 8] = size.to_bytes(4, "little")
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_wav_size_fields_are_checked_against_the_file(tmp_path, subtype):
    """A data chunk declaring 0 bytes or a quarter of what follows it: the whole file is
    read (the same samples as the correct file), with a warning; a chunk declaring more than
    the file holds is still truncation; a valid chunk after the data is left alone."""
    good = tmp_path / "good.wav"
    sf.write(good, tone(4.0, 16000, channels=2), 16000, subtype=subtype)
    expected, info = load(good, RATE)
    assert info.warning == ""
    payload = good.stat().st_size - good.read_bytes().find(b"data") - 8
    for size in (0, payload // 4):
        bad = tmp_path / f"size{size}.wav"
        _with_data_size(good, bad, size)
        audio, info = load(bad, RATE)
        np.testing.assert_array_equal(audio, expected)
        assert f"declares {size} bytes but {payload} follow it" in info.warning
    _with_data_size(good, tmp_path / "long.wav", payload * 2)
    with pytest.raises(DecodeError, match="truncated"):
        load(tmp_path / "long.wav", RATE)
    tagged = tmp_path / "tagged.wav"
    tagged.write_bytes(good.read_bytes() + b"LIST\x04\x00\x00\x00INFO")
    audio, info = load(tagged, RATE)
    assert info.warning == "" and np.array_equal(audio, expected)


def test_special_files_are_refused_unopened(tmp_path):
    """A FIFO nobody writes would block an open() forever: refused from its stat."""
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(DecodeError, match="is a FIFO"):
        load(fifo, RATE)


def test_names_that_are_not_utf8(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"caf\xe9.wav")
    sf.write(path, tone(1.0, RATE), RATE)
    audio, _ = load(os.fsdecode(path), RATE)
    assert len(audio) == RATE
