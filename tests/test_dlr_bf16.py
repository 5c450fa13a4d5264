"""The bfloat16-precision DLR forward (``dlr_engine::dlr_cpu_bf16``, AVX512_BF16): exact against
the float64 reference of bfloat16-rounded inputs and weights over random geometries, close to
float32, its refusals, opcheck, and ``DLR(precision="bfloat16")``."""
from __future__ import annotations

import pytest
import torch

from dlr_engine import DLR
from dlr_engine.config import receptive_field
from dlr_engine.ops import BackendUnavailable, dlr_cpu, dlr_reference
from dlr_engine.ops.dlr_op import dlr_bf16, dlr_cpu_bf16

pytestmark = pytest.mark.skipif(not dlr_cpu.bf16_supported(),
                                reason="this CPU has no AVX512_BF16")


def problem(seed: int, batch: int, channels: int, taps: int, dilations: tuple[int, ...],
            pool: int, frames: int):
    torch.manual_seed(seed)
    samples = receptive_field(taps, dilations) - 1 + frames * pool + seed % pool
    x = torch.randn(batch, samples)
    weight = torch.randn(len(dilations), channels, taps) / taps ** 0.5
    bias = torch.randn(len(dilations), channels) * 0.1
    return x, weight, bias


CASES = [  # batch, channels, taps, dilations, pool, frames
    (1, 8, 2, (1,), 32, 3),
    (3, 16, 4, (1, 3), 64, 5),
    (2, 32, 16, (1, 13, 169), 256, 2),
    (2, 24, 6, (2, 5, 7, 11), 96, 9),
]


@pytest.mark.parametrize("case", CASES)
def test_equals_reference_of_rounded_inputs(nan_poison, case):
    nan_poison(dlr_cpu)
    x, weight, bias = problem(len(case) + case[0] * case[1], *case)
    dilations, pool = case[3], case[4]
    with torch.no_grad():
        out = dlr_bf16(x, weight, bias, dilations, pool)
    rounded = dlr_reference(x.bfloat16().double(), weight.bfloat16().double(), bias.double(),
                            dilations, pool)
    assert out.dtype == torch.float32 and out.shape == rounded.shape
    # products of bfloat16 values are exact in float32: only the order of the sums differs
    assert (out.double() - rounded).abs().max() <= 1e-5 * rounded.abs().max()
    exact = dlr_reference(x.double(), weight.double(), bias.double(), dilations, pool)
    assert (out.double() - exact).norm() <= 1e-2 * exact.norm()


def test_module_precision_option():
    fp32 = DLR()
    bf16 = DLR(precision="bfloat16")
    bf16.load_state_dict(fp32.state_dict())
    x = torch.randn(2, fp32.min_samples + 1000)
    with torch.no_grad():
        a, b = fp32(x), bf16(x)
    assert b.shape == a.shape and (b - a).norm() <= 1e-2 * a.norm()
    assert "precision=bfloat16" in repr(bf16)
    with pytest.raises(ValueError, match="precision"):
        DLR(precision="float16")


def test_refuses_with_reasons():
    x, weight, bias = problem(0, 1, 8, 2, (1,), 32, 2)
    with pytest.raises(BackendUnavailable, match="inference only"):
        dlr_bf16(x, weight.requires_grad_(True), bias, (1,), 32)
    with torch.no_grad():
        with pytest.raises(BackendUnavailable, match="multiple of 32"):
            dlr_bf16(x, weight, bias, (1,), 48)
        with pytest.raises(BackendUnavailable, match="even kernel size"):
            dlr_bf16(x, torch.randn(1, 8, 3), bias, (1,), 32)


def test_opcheck():
    x, weight, bias = problem(1, 2, 8, 4, (1, 2), 32, 3)
    torch.library.opcheck(dlr_cpu_bf16, (x, weight, bias, [1, 2], 32),
                          test_utils=("test_schema", "test_faketensor"))
