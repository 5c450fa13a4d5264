"""The one input convention of the modules (``DLR``, ``MelSpectrogram``, ``Tempogram``): audio
``(..., samples)`` as a float tensor, or integer PCM scaled to [-1, 1) as soundfile and librosa
read it; every misuse refused with a message naming the argument."""
from __future__ import annotations

import torch

PCM_FULL_SCALE = {torch.int8: 2.0**7, torch.int16: 2.0**15, torch.int32: 2.0**31}
"""Signed PCM dtype -> the value that maps to 1.0 (``x / 2 ** (bits - 1)``)."""
UINT8_MIDPOINT = 128.0
"""8-bit unsigned PCM (WAV's 8-bit format) is offset: ``(x - 128) / 128``."""


def audio_tensor(x: torch.Tensor, owner: str) -> torch.Tensor:
    """``x`` (..., samples) as float audio: floating tensors unchanged, int8 / int16 / int32 PCM
    scaled by ``2 ** (bits - 1)`` and uint8 PCM by ``(x - 128) / 128``, to float32.

    owner: the module's name, for the messages. Raises TypeError for a non-tensor or another
    dtype (int64, bool, complex) and ValueError for a scalar or a clip of no samples.
    """
    if not isinstance(x, torch.Tensor):
        hint = "; wrap it with torch.from_numpy(x)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{owner}: x must be a torch.Tensor of audio (..., samples), got "
                        f"{type(x).__module__}.{type(x).__name__}{hint}")
    if x.dtype in PCM_FULL_SCALE:
        x = x.to(torch.float32) / PCM_FULL_SCALE[x.dtype]
    elif x.dtype == torch.uint8:
        x = (x.to(torch.float32) - UINT8_MIDPOINT) / UINT8_MIDPOINT
    elif not x.is_floating_point():
        raise TypeError(f"{owner}: x has dtype {x.dtype}; pass float audio, or int8 / int16 / "
                        f"int32 / uint8 PCM (scaled to [-1, 1) here), e.g. x.float() / 32768 "
                        f"for int16 values held in int64")
    if x.dim() == 0:
        raise ValueError(f"{owner}: x must be audio (..., samples), got a scalar")
    if x.shape[-1] == 0:
        raise ValueError(f"{owner}: x holds no samples (shape {tuple(x.shape)}); the last "
                         f"dimension is time")
    return x
