"""NCMS (Jeong & Lee 2016): the op against a numpy transcription of the paper's equations (1)-(6),
shapes, the DNNs, and the random forest with majority voting per clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlr_engine.models import ncms as ncms_model
from dlr_engine.ops import ncms as ncms_op
from dlr_engine.ops import spectral_cpu

N_FFT, HOP, EPS, T, T_HOP = 1024, 512, 1e-4, 214, 107
TWO_SEGMENT_SAMPLES = ncms_op.MIN_SAMPLES + T_HOP * HOP + 300  # two segments and a ragged tail


def _zscore(a: np.ndarray, axis: int) -> np.ndarray:
    std = np.maximum(a.std(axis=axis, keepdims=True), ncms_op.STD_FLOOR)
    return (a - a.mean(axis=axis, keepdims=True)) / std


def _ncms_numpy(x: np.ndarray) -> np.ndarray:
    """One clip (samples,) -> (segments, 513, 108), written from the equations with full DFTs."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)          # periodic Hann
    starts = range(0, len(x) - N_FFT + 1, HOP)
    spectra = np.stack([np.fft.fft(x[s:s + N_FFT] * window) for s in starts])   # (1) X(t, k)
    cepstra = np.fft.ifft(np.log(np.abs(spectra) + EPS), axis=1).real[:, :N_FFT // 2 + 1]  # (2)
    out = []
    for first in range(0, len(cepstra) - T + 1, T_HOP):                          # segments
        c_hat = _zscore(cepstra[first:first + T], axis=0)                        # (3) per quefrency
        modulation = np.abs(np.fft.fft(c_hat, axis=0))[:T // 2 + 1]              # (4)-(5) |DFT| over t
        out.append(_zscore(modulation, axis=1).T)                                # (6) per mod. bin
    return np.stack(out)


def _signal(samples: int, seed: int) -> np.ndarray:
    """Noise plus an amplitude-modulated tone: a cepstrum that changes over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / ncms_op.SAMPLE_RATE
    tone = np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))
    return 0.3 * tone + 0.1 * rng.standard_normal(samples)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ncms_matches_numpy_equations(dtype):
    clips = np.stack([_signal(TWO_SEGMENT_SAMPLES, seed) for seed in (0, 1)])
    out = ncms_op.ncms(torch.tensor(clips, dtype=dtype)).double().numpy()
    for clip, got in zip(clips, out):
        ref = _ncms_numpy(clip)
        assert got.shape == ref.shape
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-4


def test_ncms_shapes_and_silence():
    samples = (ncms_op.MIN_SAMPLES, TWO_SEGMENT_SAMPLES)
    for length in samples:
        out = ncms_op.ncms(torch.randn(3, length))
        assert out.shape == (3, ncms_op.n_segments(length), ncms_op.N_QUEFRENCIES, ncms_op.N_MODULATION)
    assert [ncms_op.n_segments(n) for n in samples] == [1, 2]
    spectral = ncms_op.spectral_frames(torch.randn(1, TWO_SEGMENT_SAMPLES))
    assert spectral.shape == (1, 2, T, N_FFT // 2 + 1)
    assert torch.isfinite(ncms_op.ncms(torch.zeros(1, ncms_op.MIN_SAMPLES))).all()
    with pytest.raises(ValueError, match="at least"):
        ncms_op.ncms(torch.randn(1, ncms_op.MIN_SAMPLES - 1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ncms_fused_matches_numpy_equations(cpu_isa, dtype):
    clips = np.stack([_signal(TWO_SEGMENT_SAMPLES, seed) for seed in (0, 1)])
    x = torch.tensor(clips, dtype=dtype)
    out = ncms_op.ncms_fused(x)
    assert out.is_contiguous() and out.dtype == dtype
    for clip, got in zip(clips, out.double().numpy()):
        ref = _ncms_numpy(clip)
        assert got.shape == ref.shape
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-4
    if dtype == torch.float64:  # the torch path: the same values as the reference
        assert (out - ncms_op.ncms(x)).abs().max() < 1e-9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ncms_fused_on_gpu():
    """The torch path of ``ncms_fused`` on a GPU (cuFFT cepstra, the DFT matmul in float32:
    torch's default leaves TF32 off for matmuls) against the float64 reference on the CPU, at
    30 s."""
    x = torch.randn(2, 30 * ncms_op.SAMPLE_RATE, dtype=torch.float64)
    expected = ncms_op.ncms(x)
    with torch.inference_mode():
        out = ncms_op.ncms_fused(x.float().cuda()).cpu().double()
    assert (out - expected).norm() / expected.norm() < 1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spectral_frames_fused_matches_reference(cpu_isa, dtype):
    x = torch.tensor(np.stack([_signal(TWO_SEGMENT_SAMPLES, seed) for seed in (2, 3)]))
    expected = ncms_op.spectral_frames(x)  # float64
    out = ncms_op.spectral_frames_fused(x.to(dtype))
    assert out.shape == expected.shape and out.is_contiguous() and out.dtype == dtype
    tolerance = 1e-9 if dtype == torch.float64 else 1e-5
    assert (out.double() - expected).norm() / expected.norm() < tolerance
    silence = ncms_op.spectral_frames_fused(torch.zeros(1, ncms_op.MIN_SAMPLES, dtype=dtype))
    assert torch.equal(silence, torch.zeros_like(silence))
    with pytest.raises(ValueError, match="at least"):
        ncms_op.spectral_frames_fused(torch.randn(1, ncms_op.MIN_SAMPLES - 1, dtype=dtype))
    with pytest.raises(ValueError, match="no gradient"):
        ncms_op.spectral_frames_fused(torch.randn(1, ncms_op.MIN_SAMPLES, requires_grad=True))


def test_ncms_fused_chunks_of_segments_agree(monkeypatch):
    """The CPU path's DFT products over CHUNK_SEGMENTS segments at a time (each chunk one half
    segment more) give the values of one product per clip, and the reference's."""
    x = torch.randn(2, TWO_SEGMENT_SAMPLES + 3 * T_HOP * HOP)  # 5 segments
    whole = ncms_op.ncms_fused(x)
    monkeypatch.setattr(ncms_op, "CHUNK_SEGMENTS", 2)
    chunked = ncms_op.ncms_fused(x)
    assert chunked.shape == whole.shape == (2, 5, ncms_op.N_QUEFRENCIES, ncms_op.N_MODULATION)
    assert torch.allclose(chunked, whole, atol=1e-5)
    expected = ncms_op.ncms(x.double())
    assert (chunked.double() - expected).norm() / expected.norm() < 1e-4


@pytest.mark.skipif(not spectral_cpu.available(), reason="the C++ extension was not built")
def test_ncms_modulation_checks_its_output():
    spectra = torch.randn(1, 4, 3, 2 * ncms_op.SEGMENT_HOP)
    with pytest.raises(ValueError, match="out must be"):
        spectral_cpu.ncms_modulation(spectra, ncms_op.STD_FLOOR, torch.empty(1, 3, 4, ncms_op.N_MODULATION))


def test_ncms_fused_shapes_silence_and_errors():
    for length in (ncms_op.MIN_SAMPLES, TWO_SEGMENT_SAMPLES + 5 * HOP):
        x = torch.randn(3, length)
        out = ncms_op.ncms_fused(x)
        assert out.shape == ncms_op.ncms(x).shape
        assert (out[..., 0] == 0).all()
    silence = ncms_op.ncms_fused(torch.zeros(2, ncms_op.MIN_SAMPLES))
    assert torch.equal(silence, torch.zeros_like(silence))  # not the float32 reference's noise
    with pytest.raises(ValueError, match="at least"):
        ncms_op.ncms_fused(torch.randn(1, ncms_op.MIN_SAMPLES - 1))
    with pytest.raises(ValueError, match="no gradient"):
        ncms_op.ncms_fused(torch.randn(1, ncms_op.MIN_SAMPLES, requires_grad=True))


def test_dnn_and_feature_shapes():
    temporal, spectral = ncms_model.temporal_dnn(7), ncms_model.spectral_dnn(7)
    assert temporal(torch.randn(4, 108)).shape == (4, 7)
    assert spectral(torch.randn(4, 513)).shape == (4, 7)
    assert temporal.features(torch.randn(2, 5, 108)).shape == (2, 5, 50)
    x = torch.randn(2, TWO_SEGMENT_SAMPLES)
    assert ncms_model.temporal_features(temporal, x).shape == (2, 2, 100)
    assert ncms_model.spectral_features(spectral, x).shape == (2, 2, 100)
    hidden = torch.randn(3, 513, 50)
    agg = ncms_model.mean_and_variance(hidden, dim=1)
    assert torch.allclose(agg[:, 50:], hidden.var(dim=1, unbiased=False))
    with pytest.raises(ValueError, match="108"):
        temporal(torch.randn(4, 513))


def test_majority_vote_hand_made():
    classes = np.array(["jazz", "rock", "waltz"])
    assert ncms_model.majority_vote(np.array(["rock", "jazz", "rock"]), classes) == "rock"
    assert ncms_model.majority_vote(np.array(["waltz", "rock"]), classes) == "rock"  # tie: first class
    # a forest that maps feature 0 -> "a" and 10 -> "b"; clips vote segment by segment
    forest = ncms_model.NCMSForestClassifier("temporal", temporal=ncms_model.temporal_dnn(2),
                                             n_estimators=5, random_state=0)
    forest.fit_features([np.zeros((4, 1)), np.full((4, 1), 10.0)], ["a", "b"])
    clips = [np.array([[0.0], [10.0], [10.0]]), np.array([[0.0], [0.0], [10.0]])]
    assert list(forest.predict_features(clips)) == ["b", "a"]


@pytest.mark.parametrize("variant", ncms_model.VARIANTS)
def test_forest_pipeline_fits_and_predicts(variant):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    t = np.arange(TWO_SEGMENT_SAMPLES) / ncms_op.SAMPLE_RATE
    noise = [rng.standard_normal(TWO_SEGMENT_SAMPLES) for _ in range(2)]
    tones = [np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(len(t)) for f in (300, 500)]
    forest = ncms_model.NCMSForestClassifier(variant, temporal=ncms_model.temporal_dnn(2),
                                             spectral=ncms_model.spectral_dnn(2), n_estimators=8,
                                             random_state=0)
    labels = ["noise", "noise", "tone", "tone"]
    forest.fit(noise + tones, labels)
    assert forest.forest.n_estimators == 8 and forest.forest.n_features_in_ == (200 if variant == "combined" else 100)
    assert list(forest.predict(noise + tones)) == labels


def test_forest_defaults_and_errors():
    assert ncms_model.NCMSForestClassifier(temporal=ncms_model.temporal_dnn()).forest.n_estimators == 500
    with pytest.raises(ValueError, match="spectral="):
        ncms_model.NCMSForestClassifier("combined", temporal=ncms_model.temporal_dnn())
    with pytest.raises(ValueError, match="unknown NCMS variant"):
        ncms_model.NCMSForestClassifier("both")
