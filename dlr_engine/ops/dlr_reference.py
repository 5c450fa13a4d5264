"""Plain-PyTorch reference of the DLR op: the specification every backend is tested against.

DESIGN §3: for branch ``i`` with dilation ``d_i``,
``y_i[c, t] = relu(b_i[c] + sum_k w_i[c, k] * x[t + k * d_i])`` for ``t < T_min``,
channels concatenated in branch order, then average-pooled with window = stride = ``pool``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import output_frames, receptive_field


def check_dlr_args(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   dilations: tuple[int, ...] | list[int], pool: int) -> int:
    """Validate shapes; return the number of output frames."""
    if x.dim() != 2:
        raise ValueError(f"x must be (batch, samples), got shape {tuple(x.shape)}")
    if weight.dim() != 3:
        raise ValueError(f"weight must be (branches, channels, taps), got {tuple(weight.shape)}")
    branches, channels, taps = weight.shape
    if tuple(bias.shape) != (branches, channels):
        raise ValueError(f"bias must be ({branches}, {channels}), got {tuple(bias.shape)}")
    if len(dilations) != branches:
        raise ValueError(f"{len(dilations)} dilations for {branches} branches")
    if any(int(d) < 1 for d in dilations) or pool < 1:
        raise ValueError(f"dilations {tuple(dilations)} and pool {pool} must be positive")
    frames = output_frames(x.shape[1], taps, tuple(dilations), pool)
    if frames < 1:
        field = receptive_field(taps, tuple(dilations))
        raise ValueError(
            f"clip of {x.shape[1]} samples is shorter than the DLR receptive field plus one pool "
            f"window ({field + pool - 1} samples at dilation {max(dilations)}, pool {pool}); "
            f"pad it or lower the dilations")
    return frames


def dlr_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                  dilations: tuple[int, ...] | list[int], pool: int = 256) -> torch.Tensor:
    """x: (batch, samples); weight: (branches, channels, taps); bias: (branches, channels).

    Returns ``(batch, branches * channels, frames)`` with
    ``frames = (samples - (taps - 1) * max(dilations)) // pool``.
    """
    frames = check_dlr_args(x, weight, bias, dilations, pool)
    t_used = frames * pool
    branches = []
    for i, dilation in enumerate(dilations):
        y = F.conv1d(x[:, None, :], weight[i][:, None, :], bias[i], dilation=int(dilation))
        branches.append(torch.relu(y[..., :t_used]))
    y = torch.cat(branches, dim=1)
    return F.avg_pool1d(y, pool, pool)
