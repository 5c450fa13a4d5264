"""Inference forms of models: eval batch norm folded into the convolutions, conv + bias +
activation + max-pool of a block fused in one C++ CPU pass (``conv_block``), whole conv stacks
run block to block without intermediate copies (``stack``), and ``inference_form(model)``
(``forms``), which ``load_model(..., for_inference=True)`` and ``extract`` use; ``specs``:
what ``extract --model`` runs (``<spec>:dlr``: the model's DLR front-end alone)."""
from .conv_block import FoldedBlock, conv_block_cpu, conv_block_reference
from .forms import InferenceModel, inference_form
from .specs import FRONT_END_SUFFIX, front_end, load_for_extraction

__all__ = ["FRONT_END_SUFFIX", "FoldedBlock", "InferenceModel", "conv_block_cpu",
           "conv_block_reference", "front_end", "inference_form", "load_for_extraction"]
