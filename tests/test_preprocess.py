"""The DLR authors' preprocessing ``|x / max|x||``: the fused C++ pass against the torch
reference on every instruction set (random shapes, silence, NaN), its dispatch, and opcheck."""
from __future__ import annotations

import pytest
import torch

from dlr_engine.ops import preprocess

pytestmark = pytest.mark.skipif(preprocess._dlr_cpu is None, reason="C++ extension not built")


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (5, 1000), (2, 240_001)])
def test_cpp_pass_equals_reference(nan_poison, cpu_isa, shape):
    nan_poison(preprocess)
    torch.manual_seed(shape[1])
    x = torch.randn(shape) * torch.rand(shape[0], 1) * 4
    x[0, 0] = -x.abs().max() * 2  # the peak is a negative sample
    if shape[0] > 2:
        x[1] = 0.0  # a silent clip stays silent
    out = preprocess.peak_abs_cpu(x)
    assert torch.equal(out, preprocess.peak_abs_reference(x))  # the same division, bit for bit
    assert out.amax(dim=1)[0] == 1.0


def test_nan_makes_its_clip_nan(cpu_isa):
    x = torch.rand(4, 50)
    x[1, 7] = float("nan")  # in the vectorised part of the peak pass
    x[3, 49] = float("nan")  # in its scalar tail (50 is no multiple of 8 or 16 lanes)
    out = preprocess.peak_abs_cpu(x)
    assert out[1].isnan().all() and out[3].isnan().all()
    assert torch.equal(out[[0, 2]], preprocess.peak_abs_reference(x)[[0, 2]])


def test_dispatch_keeps_gradients_and_other_dtypes_on_the_reference(monkeypatch):
    calls = []
    monkeypatch.setattr(preprocess, "peak_abs_cpu", lambda x: calls.append(x) or x)
    x = torch.randn(2, 30, requires_grad=True)
    preprocess.peak_abs(x).sum().backward()
    assert x.grad is not None and not calls
    preprocess.peak_abs(torch.randn(2, 30, dtype=torch.float64))
    assert not calls
    with torch.no_grad():
        preprocess.peak_abs(x)
    assert len(calls) == 1


def test_opcheck():
    torch.library.opcheck(preprocess.peak_abs_cpu, (torch.randn(3, 40),),
                          test_utils=("test_schema", "test_faketensor"))
