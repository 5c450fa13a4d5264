"""One input convention for the modules: ``DLR``, ``MelSpectrogram`` and ``Tempogram`` take
``(..., samples)``; integer PCM is scaled as audio (or refused); misuse gets a message that
names the argument."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dlr_engine import DLR, MelSpectrogram, Tempogram

SAMPLES = DLR().min_samples + 300


def modules():
    """Each module with a clip length it accepts; DLR without the peak normalisation, so the
    PCM scale shows in its output."""
    torch.manual_seed(0)
    return {"DLR": (DLR(preprocess=None), SAMPLES),
            "MelSpectrogram": (MelSpectrogram(preset="dlr"), 4000),
            "Tempogram": (Tempogram(preset="dlr"), 4000)}


MODULES = modules()


@pytest.mark.parametrize("name", MODULES)
def test_leading_dimensions_are_kept(name):
    module, samples = MODULES[name]
    x = torch.randn(2, 3, samples)
    with torch.no_grad():
        batched = module(x.reshape(6, samples))
        assert torch.allclose(module(x), batched.reshape(2, 3, *batched.shape[1:]))
        assert torch.allclose(module(x[0, 0]), batched[0], atol=1e-6)  # (samples,)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype,full_scale,offset", [(torch.int16, 2**15, 0),
                                                     (torch.int32, 2**31, 0),
                                                     (torch.int8, 2**7, 0),
                                                     (torch.uint8, 2**7, 2**7)])
def test_integer_pcm_is_scaled_as_audio(name, dtype, full_scale, offset):
    module, samples = MODULES[name]
    info = torch.iinfo(dtype)
    pcm = torch.randint(info.min, info.max, (2, samples), dtype=torch.int64).to(dtype)
    audio = (pcm.double() - offset) / full_scale
    with torch.no_grad():
        out = module(pcm)
        expected = module(audio.float())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_other_dtypes_are_refused_naming_x(name, dtype):
    module, samples = MODULES[name]
    with pytest.raises(TypeError, match=f"{name}: x has dtype {dtype}; pass float audio"):
        module(torch.zeros(1, samples, dtype=dtype))


@pytest.mark.parametrize("name", MODULES)
@pytest.mark.parametrize("shape", [(0,), (2, 0)])
def test_empty_input_says_there_are_no_samples(name, shape):
    module, _ = MODULES[name]
    with pytest.raises(ValueError, match=f"{name}: x holds no samples") as error:
        module(torch.zeros(shape))
    assert f"(shape {shape})" in str(error.value)


@pytest.mark.parametrize("name", MODULES)
def test_scalar_and_numpy_input_are_refused_naming_x(name):
    module, samples = MODULES[name]
    with pytest.raises(ValueError, match=f"{name}: x must be audio .* got a scalar"):
        module(torch.tensor(0.5))
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor .* numpy.ndarray; wrap it "
                                        r"with torch.from_numpy\(x\)"):
        module(np.zeros((1, samples), np.float32))


@pytest.mark.parametrize("paths", [np.zeros(8000, dtype=np.float32), [np.zeros(3)], 3.0],
                         ids=["array", "list-of-arrays", "float"])
def test_extract_refuses_audio_in_memory_naming_paths(paths):
    from dlr_engine import extract

    with pytest.raises(TypeError, match="paths must"):
        list(extract(paths, model="none", representations="mel"))
