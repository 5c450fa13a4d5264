"""NaN in a module's input gives the same answer on every backend (DESIGN §7): the DLR op
(torch, the C++ float32 and bfloat16 kernels, Triton in the interpreter), the authors'
preprocessing (a NaN makes its clip NaN), and the mel spectrogram (the C++ dB path included).

The expected NaN pattern is computed independently of every backend: an output element is NaN
exactly when a NaN sample lies in its receptive field (DLR, power mel), or in its clip once the
clip-wide steps (peak normalisation, the ``top_db`` floor, the z-score) have seen it.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlr_engine import DLR, MelSpectrogram
from dlr_engine.ops import dlr, explain
from dlr_engine.ops.dlr_op import dlr_bf16, dlr_bf16_supported
from dlr_engine.ops.melspec import MEL_BACKENDS, not_supported_reasons
from dlr_engine.ops.preprocess import peak_abs_cpu, peak_abs_reference

NAN = float("nan")
DLR_BACKENDS = [name for name, reasons in explain("cpu", torch.float32).items() if not reasons]
GPU_DLR_BACKENDS = [name for name, reasons in explain("cuda", torch.float32).items()
                    if not reasons and name != "torch"] if torch.cuda.is_available() else []
"""The compiled GPU backends (cuda, triton) when this machine has a CUDA GPU."""
MEL_CPU_BACKENDS = [name for name in MEL_BACKENDS
                    if not not_supported_reasons(name, "cpu", torch.float32)]
# (channels, taps, dilations, pool): tiny for the interpreter; the bfloat16 kernel needs even
# taps, channels a multiple of 8 and a pool a multiple of 32
GEOMETRY = (8, 4, (1, 3, 5), 32)


def with_nans(batch: int, samples: int, positions: list[int], seed: int = 0) -> torch.Tensor:
    """Random clips; clip 0 holds NaN at ``positions``, the others are finite."""
    x = torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed))
    x[0, positions] = NAN
    return x


def expected_dlr_nans(x: torch.Tensor, taps: int, dilations: tuple[int, ...],
                      pool: int) -> torch.Tensor:
    """(batch, branches * channels, frames) bool, per branch and frame (the same for every
    channel): whether a NaN sample is one of the frame's taps."""
    nan = x.isnan().double()[:, None]
    field = (taps - 1) * max(dilations) + 1
    frames = (x.shape[1] - field + 1) // pool
    branches = []
    for dilation in dilations:
        touched = F.conv1d(nan, torch.ones(1, 1, taps, dtype=torch.float64), dilation=dilation)
        branches.append(F.avg_pool1d(touched[..., :frames * pool], pool) > 0)
    return torch.cat(branches, dim=1)


def dlr_inputs(seed: int = 1):
    channels, taps, dilations, pool = GEOMETRY
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(len(dilations), channels, taps, generator=generator) / taps**0.5
    bias = 0.1 * torch.randn(len(dilations), channels, generator=generator)
    # NaN at the very start, in the middle and in the dropped tail of clip 0
    x = with_nans(3, 400, [0, 171, 399], seed)
    return x, weight, bias, dilations, pool


def assert_same_nans_and_close(out: torch.Tensor, expected_nans: torch.Tensor,
                               reference: torch.Tensor, rtol: float = 1e-5) -> None:
    assert torch.equal(out.isnan(), expected_nans.expand_as(out))
    finite = ~expected_nans.expand_as(out)
    torch.testing.assert_close(out[finite], reference[finite], rtol=rtol, atol=rtol)


def check_dlr_op_nans(backend: str, device: str) -> None:
    """The op on ``device`` by ``backend``: NaN exactly where a NaN sample is read, the other
    values as the float64 reference's."""
    x, weight, bias, dilations, pool = dlr_inputs()
    expected = expected_dlr_nans(x, weight.shape[2], dilations, pool)
    expected = expected.repeat_interleave(weight.shape[1], dim=1)  # every channel of a branch
    assert expected[0].any() and not expected[0].all() and not expected[1:].any()
    reference = dlr(x.double(), weight.double(), bias.double(), dilations, pool, backend="torch")
    with torch.no_grad():
        out = dlr(x.to(device), weight.to(device), bias.to(device), dilations, pool,
                  backend=backend)
    assert_same_nans_and_close(out.cpu(), expected, reference.float())


@pytest.mark.parametrize("backend", DLR_BACKENDS)
def test_dlr_op_propagates_nan_like_the_reference(backend):
    check_dlr_op_nans(backend, "cpu")


@pytest.mark.skipif(not GPU_DLR_BACKENDS, reason="needs a CUDA GPU with a compiled DLR backend")
@pytest.mark.parametrize("backend", GPU_DLR_BACKENDS or ["none"])
def test_gpu_dlr_op_propagates_nan_like_the_reference(backend):
    check_dlr_op_nans(backend, "cuda")


@pytest.mark.parametrize("backend", DLR_BACKENDS)
def test_dlr_gradients_match_the_reference_nan_pattern(backend):
    """Backward recomputes the ReLU mask from x: a NaN pre-activation passes the gradient (as
    torch's ReLU backward), so the NaN pattern of every gradient is the reference's. (NaN in the
    dropped tail is left out: torch's convolution multiplies it by the zero gradient there.)"""
    x, weight, bias, dilations, pool = dlr_inputs(seed=2)
    x[0, -1] = 0.0
    grads = {}
    for name in ("torch", backend):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = dlr(*leaves, dilations, pool, backend=name)
        out.backward(torch.ones_like(out))
        grads[name] = [t.grad for t in leaves]
    assert grads["torch"][1].isnan().any()
    for ours, theirs in zip(grads[backend], grads["torch"]):
        assert torch.equal(ours.isnan(), theirs.isnan())
        torch.testing.assert_close(ours.nan_to_num(), theirs.nan_to_num(), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not dlr_bf16_supported(), reason="no AVX512_BF16 CPU or no C++ extension")
def test_bfloat16_kernel_propagates_nan():
    x, weight, bias, dilations, pool = dlr_inputs(seed=3)
    x[1, 5] = float("inf")  # stays Inf (not NaN) through the rounding to bfloat16
    expected = expected_dlr_nans(x, weight.shape[2], dilations, pool)
    expected = expected.repeat_interleave(weight.shape[1], dim=1)
    reference = dlr(x.bfloat16().double(), weight.bfloat16().double(), bias.double(), dilations,
                    pool, backend="torch")
    with torch.no_grad():
        out = dlr_bf16(x, weight, bias, dilations, pool)
    assert torch.equal(out.isnan(), expected)
    assert out[1].isinf().any() and torch.equal(out.isinf(), reference.isinf())
    finite = reference.isfinite()
    torch.testing.assert_close(out[finite], reference[finite].float(), rtol=1e-4, atol=1e-4)


def test_preprocessing_makes_a_nan_clip_nan_on_both_paths():
    x = with_nans(3, 100, [42])
    for out in (peak_abs_reference(x), peak_abs_cpu(x)):
        assert out[0].isnan().all() and not out[1:].isnan().any()


@pytest.mark.parametrize("backend", DLR_BACKENDS)
def test_dlr_module_gives_nan_for_a_nan_clip_on_every_backend(backend):
    """The issue's repro at a small geometry (every backend) and the published one (the
    automatic CPU choice): one NaN sample used to give an all-zero DLR on the cpu backend."""
    channels, taps, dilations, pool = GEOMETRY
    module = DLR(n_branches=len(dilations), channels=channels, kernel_size=taps,
                 dilations=dilations, pool=pool, backend=backend)
    x = with_nans(2, 300, [5])
    with torch.no_grad():
        out = module(x)
    assert out[0].isnan().all()
    assert out[1].isfinite().all()


def test_published_dlr_gives_nan_for_a_nan_clip():
    x = with_nans(2, DLR().min_samples + 100, [5])
    with torch.no_grad():
        out = DLR()(x)
    assert out[0].isnan().all() and out[1].isfinite().all()


def expected_frame_nans(x: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """(batch, 1, frames) bool: whether a centred, zero-padded frame holds a NaN sample."""
    padded = F.pad(x.isnan().double(), (n_fft // 2, n_fft // 2))
    return padded.unfold(-1, n_fft, hop_length).sum(-1)[:, None] > 0


MEL = dict(sr=8000, n_fft=64, hop_length=16, n_mels=8, pad_mode="constant")


@pytest.mark.parametrize("backend", MEL_CPU_BACKENDS)
@pytest.mark.parametrize("to_db", [False, "amplitude"])
def test_mel_frames_with_a_nan_are_nan_on_every_backend(backend, to_db):
    """Power and dB without the clip-wide floor: exactly the frames holding the NaN are NaN
    (the C++ dB path used to floor them to ``amin``)."""
    x = with_nans(2, 400, [100])
    expected = expected_frame_nans(x, MEL["n_fft"], MEL["hop_length"])
    assert expected[0].any() and not expected[0].all()
    module = MelSpectrogram(**MEL, to_db=to_db, top_db=None, backend=backend)
    reference = MelSpectrogram(**MEL, to_db=to_db, top_db=None, backend="torch")(x.double())
    with torch.no_grad():
        out = module(x)
    assert_same_nans_and_close(out, expected, reference.float(), rtol=1e-4)


@pytest.mark.parametrize("backend", MEL_CPU_BACKENDS)
def test_dlr_mel_preset_makes_a_nan_clip_nan(backend):
    """The "dlr" preset's top_db floor and z-score are per clip: a NaN clip is all NaN (the
    C++ path used to give the dB floor), the other clips are untouched."""
    x = with_nans(2, 1200, [600])
    module = MelSpectrogram(preset="dlr", n_fft=128, win_length=64, hop_length=32, n_mels=16,
                            backend=backend)
    with torch.no_grad():
        out = module(x)
        clean = module(x[1:])
    assert out[0].isnan().all()
    torch.testing.assert_close(out[1:], clean)
