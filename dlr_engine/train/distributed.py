"""Multi-process training helpers: process-group setup from torchrun's environment and batch
norm over the global batch (``GlobalBatchNorm`` on CPU / Gloo, ``nn.SyncBatchNorm`` on CUDA)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def setup_distributed(device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device). With ``WORLD_SIZE`` > 1 (set by ``torchrun``), joins the
    process group (NCCL on CUDA, else Gloo) and uses GPU ``LOCAL_RANK``."""
    cuda = torch.cuda.is_available() and device != "cpu"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, torch.device(device or ("cuda" if cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), world, torch.device("cuda", local_rank) if cuda else torch.device("cpu")


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: each process's input
    affects the losses of all processes."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return _SumOverProcesses.apply(grad)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the batches of all processes (``nn.SyncBatchNorm`` needs CUDA; this
    works on CPU with Gloo): the per-channel sums are all-reduced, differentiably, so the
    output, the gradients and the running statistics equal those of one process with the
    global batch. In eval mode (or outside a process group) it is ``BatchNorm``."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2 dimensions (batch, channels, ...), got {input.dim()}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        count = torch.tensor(float(input.numel() // input.shape[1]), device=input.device)
        dist.all_reduce(count)
        mean = _SumOverProcesses.apply(input.sum(dims)) / count
        shape = [1, -1] + [1] * (input.dim() - 2)
        centred = input - mean.reshape(shape)
        var = _SumOverProcesses.apply(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (1.0 / self.num_batches_tracked.item() if self.momentum is None
                            else self.momentum)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(var * count / max(count - 1, 1), momentum)
        output = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            output = output * self.weight.reshape(shape) + self.bias.reshape(shape)
        return output


def global_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with its batch norms replaced (in place) by ones over the global batch:
    ``nn.SyncBatchNorm`` on CUDA, ``GlobalBatchNorm`` elsewhere; parameters and running
    statistics are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum,
                                              child.affine, child.track_running_stats)
                replacement.load_state_dict(child.state_dict())
                setattr(parent, name, replacement.to(device))
    return model
