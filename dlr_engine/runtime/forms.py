"""Inference forms of models: a copy of the model whose conv stacks run as fused blocks.

``inference_form(model)`` finds every ``nn.Sequential`` that is a stack of 2D conv blocks on a
one-channel image -- the ``ConvBlock`` stacks of ``dlr_source`` and ``fcn`` and the CRNN's
``conv`` (input batch norm, then Conv2d -> BatchNorm2d -> ELU -> MaxPool2d -> Dropout blocks) --
or of 1D conv blocks (the sample-level CNN's ``features``: Conv1d, strided first, ->
BatchNorm1d -> ReLU -> MaxPool1d), and replaces it by a ``FusedConvStack`` (eval batch norm folded into the convolutions, weights
packed once, conv + bias + activation + max-pool per block in one C++ pass). Everything else
(front-ends, recurrent layers, heads, input checks, output keys) is the model's own code, so
outputs and errors are the eager model's. Modules with a ``use_fused_ops()`` method (``ncms``)
switch to their ops' fused forms. The eager model stays the reference.

The forms are for inference only (no autograd through the fused blocks) and snapshot the weights
when made. Precision: float32 (within ~1e-6 of eager), or bfloat16 (activations and conv
weights bfloat16, float32 sums; AVX512_BF16 CPUs) where the model's DLR front-end runs in
bfloat16 (``DLR.precision``, which ``extract(precision=...)`` sets) or ``precision`` says so.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..models.dlr_source import ConvBlock
from ..nn import DLR, PRECISIONS
from .conv_block import FoldedBlock
from .stack import ConvStack

FORWARDED_ATTRIBUTES = ("sample_rate", "label_names", "min_samples", "preprocessing",
                        "embedding_dim", "style_keys", "min_frames")
"""Attributes of the source model an ``InferenceModel`` answers to as well."""


LAYERS = {2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d), 1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d)}
"""Conv, batch norm and max-pool classes of a 2D and of a 1D stack."""


def _pool_of(layer: nn.MaxPool1d | nn.MaxPool2d) -> tuple[int, int] | None:
    """(rows, cols) of a plain non-overlapping max-pool (1D: (1, size)), None for any other."""
    as_2d = (lambda v: (1, *nn.modules.utils._single(v))) if isinstance(layer, nn.MaxPool1d) \
        else nn.modules.utils._pair
    kernel, stride = as_2d(layer.kernel_size), as_2d(layer.stride or layer.kernel_size)
    pair = nn.modules.utils._pair
    if stride != kernel or set(pair(layer.padding)) != {0} or set(pair(layer.dilation)) != {1} \
            or layer.ceil_mode or layer.return_indices:
        return None
    return kernel


def _layers(stack: nn.Sequential) -> list[nn.Module]:
    """The stack's layers, ``ConvBlock`` expanded into (its padding, conv, bn, ReLU, pool)."""
    layers: list = []
    for layer in stack:
        if isinstance(layer, ConvBlock):
            layers += [layer.padding, layer.conv, layer.bn, nn.ReLU(), layer.pool]
        else:
            layers.append(layer)
    return layers


def fold_stack(stack: nn.Sequential) -> ConvStack | None:
    """``stack`` as a ``ConvStack`` when it is (an optional one-channel BatchNorm2d, then)
    blocks of [padding] Conv2d, optional BatchNorm2d, optional ReLU / ELU(1), optional
    MaxPool2d, optional Dropout, with a one-channel first conv -- or the same of Conv1d,
    BatchNorm1d and MaxPool1d (any input channels; ``ConvStack.dims`` says which); None
    otherwise."""
    layers = _layers(stack)
    dims = 1 if any(isinstance(layer, nn.Conv1d) for layer in layers) else 2
    conv_type, norm_type, pool_type = LAYERS[dims]
    affine = None
    if layers and isinstance(layers[0], nn.BatchNorm2d) and layers[0].num_features == 1:
        bn = layers.pop(0)
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        affine = (float(scale), float(bn.bias.detach() - bn.running_mean * scale))
    blocks: list[FoldedBlock] = []
    while layers:
        padding = layers.pop(0) if isinstance(layers[0], tuple) else (0, 0, 0, 0)
        if not layers or not isinstance(layers[0], conv_type):
            return None
        conv = layers.pop(0)
        bn = layers.pop(0) if layers and isinstance(layers[0], norm_type) else None
        activation = "identity"
        if layers and isinstance(layers[0], nn.ReLU):
            activation = "relu"
        elif layers and isinstance(layers[0], nn.ELU) and layers[0].alpha == 1.0:
            activation = "elu"
        if activation != "identity":
            layers.pop(0)
        pool = None
        if layers and isinstance(layers[0], pool_type):
            pool = _pool_of(layers.pop(0))
            if pool is None:
                return None
        elif layers and isinstance(layers[0], nn.Identity):
            layers.pop(0)
        if layers and isinstance(layers[0], nn.Dropout):
            layers.pop(0)
        try:
            blocks.append(FoldedBlock.fold(conv, bn, padding, pool, activation))
        except ValueError:
            return None
    if not blocks or (dims == 2 and blocks[0].weight.shape[1] != 1):
        return None
    stack = ConvStack(blocks, affine)
    stack.dims = dims
    return stack


class FusedConvStack(nn.Module):
    """Drop-in for a conv ``nn.Sequential`` in eval: forward(image (N, 1, rows, cols)) ->
    (N, channels, rows', cols') float32 (a channels-last view); a 1D stack: forward(x (N,
    channels, steps)) -> (N, channels', steps') float32. ``bfloat16`` is set by the
    ``InferenceModel`` that owns it. The folded weights are buffers (``state_dict`` and
    fingerprints see them)."""

    def __init__(self, stack: ConvStack) -> None:
        super().__init__()
        self.stack = stack
        self.bfloat16 = False
        for i, block in enumerate(stack.blocks):
            self.register_buffer(f"weight_{i}", block.weight)
            self.register_buffer(f"bias_{i}", block.bias)

    def _sync(self) -> None:
        """Point the blocks at the current buffers (``.to(device)`` replaces them)."""
        for i, block in enumerate(self.stack.blocks):
            weight, bias = getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}")
            if block.weight is not weight or block.bias is not bias:
                block.weight, block.bias = weight, bias
                block._packed.clear()

    def forward(self, x: Tensor) -> Tensor:
        self._sync()
        if self.stack.dims == 1:
            if x.dim() != 3 or x.shape[1] != self.stack.blocks[0].weight.shape[1]:
                raise ValueError(f"expected (batch, {self.stack.blocks[0].weight.shape[1]}, "
                                 f"steps), got {tuple(x.shape)}")
            return self.stack(x.float().transpose(1, 2).unsqueeze(1), self.bfloat16)[:, 0].transpose(1, 2)
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a one-channel image (batch, 1, rows, cols), got "
                             f"{tuple(x.shape)}")
        return self.stack(x[:, 0].float().unsqueeze(3), self.bfloat16).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return " -> ".join(f"{tuple(b.weight.shape[2:])} conv {b.weight.shape[0]} {b.activation}"
                           f" pool {b.pool}" for b in self.stack.blocks)


class InferenceModel(nn.Module):
    """``model`` for inference with its conv stacks fused (``inference_form``); ``forward`` is
    the model's. ``source`` is the eager model (the reference; save that one).

    precision: "float32" or "bfloat16" for the fused blocks; models with a DLR front-end follow
    it: reading gives the DLR's precision, setting sets the DLR's too.
    """

    def __init__(self, model: nn.Module, precision: str = "float32") -> None:
        super().__init__()
        self.source = model
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.fused = _replace_stacks(self.model)
        for module in self.model.modules():
            if hasattr(module, "use_fused_ops"):  # e.g. ncms: its op's fused form
                module.use_fused_ops()
        for name in FORWARDED_ATTRIBUTES:
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        self._precision = "float32"
        self.precision = precision

    def _dlrs(self) -> list[DLR]:
        return [m for m in self.model.modules() if isinstance(m, DLR)]

    @property
    def precision(self) -> str:
        dlrs = self._dlrs()
        return dlrs[0].precision if dlrs else self._precision

    @precision.setter
    def precision(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self._precision = precision
        for dlr in self._dlrs():
            dlr.precision = precision

    def state_dict(self, *args, **kwargs):
        """The inference model's own state (``model.*``: the source's weights and the folded
        blocks); ``source`` is left out (it is a copy of the same weights)."""
        state = super().state_dict(*args, **kwargs)
        return type(state)((k, v) for k, v in state.items() if not k.startswith("source."))

    def config(self):
        return self.source.config()

    def forward(self, x: Tensor):
        bfloat16 = self.precision == "bfloat16"
        for stack in self.fused:
            stack.bfloat16 = bfloat16
        with torch.inference_mode():
            return self.model(x)


def _replace_stacks(model: nn.Module) -> list[FusedConvStack]:
    """Replace, in place, every foldable conv ``nn.Sequential`` of ``model`` by a
    ``FusedConvStack`` (one ending in ``nn.Flatten``, as the single-conv branches of ``pons``
    and ``mcclstm``, keeps its Flatten after it); returns them."""
    fused = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Sequential):
                layers = list(child)
                tail = [layers.pop()] if layers and isinstance(layers[-1], nn.Flatten) else []
                stack = fold_stack(nn.Sequential(*layers))
                if stack is not None:
                    fused.append(FusedConvStack(stack))
                    setattr(parent, name, nn.Sequential(fused[-1], *tail) if tail else fused[-1])
    return fused


def inference_form(model: nn.Module, precision: str | None = None) -> InferenceModel:
    """``InferenceModel(model)``: eval, conv stacks fused where the model has them (a model
    without any runs as it is, e.g. ``pooled``, whose DLR op is already fused). ``precision``
    None keeps the model's DLR precision (float32 without a DLR)."""
    if isinstance(model, InferenceModel):
        model = model.source
    model = getattr(model, "module", model).eval()
    if precision is None:
        dlrs = [m for m in model.modules() if isinstance(m, DLR)]
        precision = dlrs[0].precision if dlrs else "float32"
    return InferenceModel(model, precision)
