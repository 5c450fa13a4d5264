"""Triton DLR kernels against the plain-PyTorch reference, on tiny shapes.

Runs the kernels in Triton's interpreter on CPU. Triton reads ``TRITON_INTERPRET`` when
``@triton.jit`` decorates a function: for triton's own ``tl.sum``, ``tl.zeros``... that is at
``import triton``, which ``torch._dynamo`` (hence ``import dlr_engine``) performs. So the flag
must be set before any test module imports dlr_engine: tests/conftest.py is the place; the
``setdefault`` below covers running this file alone. Once set it stays set for the whole pytest
process: any Triton kernel is interpreted (the only way Triton runs without a GPU) and
torch.compile's CPU code generation (C++) ignores it. ``TRITON_INTERPRET=0`` set by the caller is
respected: the tests then run compiled on a CUDA device, or are skipped without one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")
from dlr_engine.config import receptive_field  # noqa: E402
from dlr_engine.ops import dlr_triton  # noqa: E402
from dlr_engine.ops.dlr_reference import dlr_reference  # noqa: E402

DEVICE = "cpu" if dlr_triton.INTERPRETED else "cuda"
pytestmark = pytest.mark.skipif(
    not dlr_triton.INTERPRETED and not torch.cuda.is_available(),
    reason="compiled Triton needs a CUDA GPU; set TRITON_INTERPRET=1 to use the interpreter")

TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3}
"""Largest accepted relative error ``||out - ref|| / ||ref||`` against the float64 reference
in float32 precision: float32 accumulation, then (float16) rounding of the outputs to 2 ** -11.
Other precisions: ``dlr_triton.PRECISION_TOLERANCE``."""
PRECISIONS = dlr_triton.PRECISIONS

CASES = {
    # name: (batch, samples, channels, taps, dilations, pool)
    "pool8": (3, 110, 5, 4, (1, 2, 3), 8),
    "pool6_batch1": (1, 131, 3, 3, (1, 2, 3), 6),
    "one_frame": (3, receptive_field(3, (1, 2, 3)) + 5 - 1, 4, 3, (1, 2, 3), 5),
    "two_branches_taps5": (2, 90, 4, 5, (3, 1), 4),
    "published_taps_and_channels": (1, 200, 32, 16, (1, 3, 9), 16),
    "taps17_channels20": (1, 130, 20, 17, (1, 2), 7),
}


@pytest.fixture(autouse=True)
def poisoned_buffers(nan_poison):
    """Outputs and partial-gradient buffers start as NaN, so an element left unwritten fails."""
    nan_poison(dlr_triton)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def make_inputs(batch, samples, channels, taps, dilations, dtype=torch.float32, seed=0):
    """x (batch, samples), weight (branches, channels, taps), bias (branches, channels)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, samples, generator=generator)
    weight = torch.randn(len(dilations), channels, taps, generator=generator) / taps**0.5
    bias = 0.1 * torch.randn(len(dilations), channels, generator=generator)
    return [t.to(DEVICE, dtype) for t in (x, weight, bias)]


def reference_with_grads(x, weight, bias, dilations, pool, seed=1):
    """float64 reference output of the (rounded) inputs, an upstream gradient in x's dtype, and
    the float64 autograd gradients (x, weight, bias) it gives."""
    leaves = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = dlr_reference(*leaves, dilations, pool)
    generator = torch.Generator().manual_seed(seed)
    grad_out = torch.randn(ref.shape, generator=generator).to(DEVICE, x.dtype)
    ref.backward(grad_out.double())
    return ref.detach(), grad_out, [leaf.grad for leaf in leaves]


def check_against_reference(batch, samples, channels, taps, dilations, pool,
                            dtype=torch.float32, precision="float32") -> list[float]:
    """Forward and the three gradients against the float64 reference; returns their errors."""
    tolerance = max(TOLERANCE[dtype], dlr_triton.PRECISION_TOLERANCE[precision])
    x, weight, bias = make_inputs(batch, samples, channels, taps, dilations, dtype)
    ref, grad_out, ref_grads = reference_with_grads(
        *(dlr_triton.round_operands(t, precision).to(dtype) for t in (x, weight)), bias,
        dilations, pool)
    out = dlr_triton.dlr_forward(x, weight, bias, dilations, pool, precision)
    assert out.shape == ref.shape and out.dtype == dtype
    errors = [relative_error(out, ref)]
    grads = dlr_triton.dlr_backward(grad_out, x, weight, bias, dilations, pool, need_x_grad=True,
                                    precision=precision)
    for name, grad, ref_grad in zip(("x", "weight", "bias"), grads, ref_grads):
        assert grad.shape == ref_grad.shape and grad.dtype == dtype, name
        errors.append(relative_error(grad, ref_grad))
    assert max(errors) < tolerance, errors
    return errors


PRECISION_CASES = [(name, precision) for name in CASES for precision in PRECISIONS
                   if precision == "float32" or name in ("pool6_batch1", "taps17_channels20",
                                                         "published_taps_and_channels")]
"""Every case in float32; the reduced precisions on the cases with padded taps and channels
(one branch block ragged, one exact) (the interpreter is slow: CI time)."""


@pytest.mark.parametrize("name,precision", PRECISION_CASES)
def test_forward_and_backward_match_reference(name, precision):
    check_against_reference(*CASES[name], precision=precision)


def test_reduced_precisions_round_the_operands():
    """tf32 and bfloat16 really round x and the weights: against the exact float64 reference
    their forward errors exceed float32's by orders of magnitude (bfloat16's exceed tf32's)."""
    batch, samples, channels, taps, dilations, pool = CASES["published_taps_and_channels"]
    x, weight, bias = make_inputs(batch, samples, channels, taps, dilations)
    ref = dlr_reference(x.double(), weight.double(), bias.double(), dilations, pool)
    errors = {p: relative_error(dlr_triton.dlr_forward(x, weight, bias, dilations, pool, p), ref)
              for p in PRECISIONS}
    assert errors["float32"] < 1e-6 < 100 * errors["float32"] < errors["tf32"]
    assert 4 * errors["tf32"] < errors["bfloat16"] < 1e-2, errors


def test_round_operands_matches_torch_bfloat16():
    x = torch.randn(1000) * 10.0 ** torch.randint(-30, 30, (1000,))
    x[:3] = torch.tensor([float("nan"), float("inf"), -3.4e38])
    assert torch.equal(dlr_triton.round_operands(x, "bfloat16")[1:], x[1:].bfloat16().float())
    tf32 = dlr_triton.round_operands(x[3:], "tf32")
    assert ((tf32 - x[3:]) / x[3:]).abs().max() <= 2.0**-11
    assert torch.equal(dlr_triton.round_operands(tf32, "tf32"), tf32)  # already on the grid


def test_nan_propagates_like_the_reference():
    """A NaN sample gives NaN in every frame whose window reads it, as torch.relu does, and
    nowhere else, in every precision (gradients: tests/test_nan.py)."""
    dilations, pool = (1, 2, 3), 4
    x, weight, bias = make_inputs(1, 80, 3, 3, dilations)
    x[0, 40] = float("nan")
    ref = dlr_reference(x.double(), weight.double(), bias.double(), dilations, pool)
    for precision in PRECISIONS:
        out = dlr_triton.dlr_forward(x, weight, bias, dilations, pool, precision)
        assert torch.equal(out.isnan(), ref.isnan()) and ref.isnan().any(), precision


def test_float16_inputs_computed_in_float32():
    check_against_reference(2, 100, 4, 3, (1, 2, 3), 8, dtype=torch.float16)


@pytest.mark.skipif(not dlr_triton.INTERPRETED, reason="compiled runs autotune the tiles")
def test_tiled_channels_window_and_frame_blocks(monkeypatch):
    """Small block caps: 2 channel blocks (ragged), 3 tiles per pool window (ragged), several
    frames per program with a ragged last frame block, input-gradient blocks shorter than the
    receptive field."""
    monkeypatch.setattr(dlr_triton, "MAX_BLOCK_CHANNELS", 16)
    monkeypatch.setattr(dlr_triton, "MAX_BLOCK_TIME", 16)
    monkeypatch.setattr(dlr_triton, "FORWARD_FRAMES_PER_PROGRAM", 3)
    monkeypatch.setattr(dlr_triton, "MAX_BACKWARD_FRAME_BLOCKS", 2)
    monkeypatch.setattr(dlr_triton, "INPUT_GRAD_BLOCK_SAMPLES", 16)
    check_against_reference(2, 180, 20, 3, (1, 5, 7), 40)


def test_non_contiguous_x_and_no_x_grad():
    dilations, pool = (1, 2, 3), 4
    x, weight, bias = make_inputs(2, 2 * 70, 3, 3, dilations)
    x = x[:, ::2]
    ref, grad_out, ref_grads = reference_with_grads(x, weight, bias, dilations, pool)
    tolerance = TOLERANCE[torch.float32]
    assert relative_error(dlr_triton.dlr_forward(x, weight, bias, dilations, pool), ref) < tolerance
    grad_x, grad_weight, grad_bias = dlr_triton.dlr_backward(
        grad_out, x, weight, bias, dilations, pool, need_x_grad=False)
    assert grad_x is None
    assert relative_error(grad_weight, ref_grads[1]) < tolerance
    assert relative_error(grad_bias, ref_grads[2]) < tolerance


def test_rejects_float64_and_short_clips():
    x, weight, bias = make_inputs(1, 40, 3, 3, (1, 2, 3))
    with pytest.raises(TypeError, match="float64"):
        dlr_triton.dlr_forward(x.double(), weight, bias, (1, 2, 3), 4)
    with pytest.raises(ValueError, match="receptive field"):
        dlr_triton.dlr_forward(x[:, :9], weight, bias, (1, 2, 3), 4)  # field 7 + pool 4 - 1 = 10


def test_compiled_mode_autotunes_on_the_geometry():
    """The compiled branch of the launcher (only a GPU machine imports it otherwise): each
    kernel autotuned on the geometry and precision, time tiles pruned to the pool window."""
    code = """if True:
        import json
        from dlr_engine.ops import dlr_triton as d
        kernels = (d._forward_kernel, d._weight_grad_kernel, d._input_grad_kernel)
        pruned = {pool: [c.kwargs["BLOCK_T"]
                         for c in d._pool_tiles(d.TIME_CONFIGS, {"pool": pool})]
                  for pool in (8, 200, 256)}
        print(json.dumps({"interpreted": d.INTERPRETED, "keys": [k.keys for k in kernels],
                          "configs": [len(k.configs) for k in kernels], "pruned": pruned}))"""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    report = json.loads(out)
    assert report["interpreted"] is False
    assert report["keys"] == [dlr_triton.GEOMETRY_KEY] * 3
    assert report["configs"] == [len(configs) for configs in (
        dlr_triton.TIME_CONFIGS, dlr_triton.WEIGHT_GRAD_CONFIGS, dlr_triton.INPUT_GRAD_CONFIGS)]
    assert report["pruned"] == {"8": [128],  # no tile fits: the smallest, alone
                                "200": [128, 128, 256, 256], "256": [128, 128, 256, 256]}
