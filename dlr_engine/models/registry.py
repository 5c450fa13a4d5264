"""One registry of models by name: build (``get``), save (``save_model``) and load (``load_model``).

A saved model is a ``.safetensors`` file of its ``state_dict`` whose metadata (strings) holds:
``format`` (``FORMAT``), ``model`` (registry name), ``options`` (JSON constructor options),
``label_names`` (JSON: output key -> class or tag names), ``preprocessing``, ``sample_rate``,
plus whatever the caller adds (training command, held-out figures, ...).

Every model returned here has ``sample_rate`` (Hz of the raw audio it takes: the model's own,
8000 unless it says otherwise) and ``label_names``
(output key -> names, e.g. ``{"style_logits": [...], "tempo_logits": [...]}``; empty when not
known). ``tag_logits`` are independent (sigmoid); other ``*_logits`` are classes (softmax).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Callable

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import PAPER, TEMPO_CLASS_BOUNDARIES_BPM
from ..nn import DLR
from .dlr_source import DLRSourceTaskNet
from .families import FAMILIES, PEAK_ABS
from .fcn import FCNTagger

FORMAT = "dlr-engine/model"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "default.safetensors"
DEFAULT_COMMAND = "python -m dlr_engine.train.default_model --out dlr_engine/weights/default.safetensors"
FILE_MODE = 0o644
PREPROCESSING = f"8 kHz mono float; DLR input: {PEAK_ABS}"
"""Preprocessing of models without their own ``preprocessing`` string (``dlr_source``, ``fcn``)."""


def tempo_class_names() -> list[str]:
    """Names of the paper's tempo classes, slow to fast: ``<112``, ``112-149``, ``149-187``, ``>=187``."""
    bounds = [f"{bpm:g}" for bpm in TEMPO_CLASS_BOUNDARIES_BPM]
    return [f"<{bounds[0]}"] + [f"{a}-{b}" for a, b in zip(bounds, bounds[1:])] + [f">={bounds[-1]}"]


def _dlr_source(dlr: dict[str, Any] | None = None, preprocess: bool = True, backend: str | None = None,
                **options: Any) -> DLRSourceTaskNet:
    front_end = DLR(**(dlr or {}), preprocess="peak_abs" if preprocess else None, backend=backend)
    return DLRSourceTaskNet(dlr=front_end, **options)


MODELS: dict[str, tuple[type[nn.Module], Callable[..., nn.Module]]] = {
    "dlr_source": (DLRSourceTaskNet, _dlr_source),
    "fcn": (FCNTagger, FCNTagger),
    **{name: (cls, cls) for name, cls in FAMILIES.items()},
}
"""name -> (class, builder taking the JSON options of ``model.config()`` plus ``backend``);
the literature's families (``crnn``, ``samplecnn``, ``pons``, ``mcclstm``, ``pooled``, ``ncms``,
``songsummary``) are described in ``families``."""


def names() -> list[str]:
    return sorted(MODELS)


def get(name: str, **options: Any) -> nn.Module:
    """A new model ``name`` (see ``names()``) built with ``options`` (its constructor options,
    as ``model.config()`` returns them, and ``backend`` to force a DLR op backend)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(names())}")
    model = MODELS[name][1](**options)
    model.sample_rate = getattr(model, "sample_rate", PAPER.sample_rate)
    model.label_names = {}
    return model


def name_of(model: nn.Module) -> str:
    """Registry name of ``model`` (unwrapping DistributedDataParallel)."""
    model = getattr(model, "module", model)
    for name, (cls, _) in MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered model ({', '.join(names())})")


def save_model(model: nn.Module, path: str | Path, label_names: dict[str, list[str]] | None = None,
               metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s weights and architecture to ``path`` (.safetensors); ``label_names``
    defaults to ``model.label_names``; ``metadata`` adds string entries. The file is written
    under a temporary name and renamed, so ``path`` is never half written."""
    model = getattr(model, "module", model)
    labels = label_names if label_names is not None else getattr(model, "label_names", {})
    extra = dict(metadata or {})
    bad = [key for key, value in extra.items() if not isinstance(value, str)]
    if bad:
        raise TypeError(f"safetensors metadata values must be strings; encode {bad} as JSON")
    header = {"format": FORMAT, "model": name_of(model), "options": json.dumps(model.config()),
              "label_names": json.dumps(labels),
              "preprocessing": getattr(model, "preprocessing", PREPROCESSING),
              "sample_rate": str(getattr(model, "sample_rate", PAPER.sample_rate))}
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={**extra, **header})
        tmp.chmod(FILE_MODE)  # safetensors creates files readable by their owner only
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def metadata(path: str | Path) -> dict[str, str]:
    """The metadata strings of a ``.safetensors`` file."""
    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata() or {})


def load_model(spec: str | Path = "default", backend: str | None = None,
               for_inference: bool = False) -> nn.Module:
    """A model in eval mode from ``spec``:

    - ``"default"``: the shipped weights (``DEFAULT_WEIGHTS``): a ``dlr_source`` model trained on
      the synthetic rhythm corpus; ``forward(x (batch, samples) at 8 kHz)`` returns ``dlr``,
      ``embedding`` (batch, 128), ``style_logits`` and ``tempo_logits`` (batch, 4, slow to fast);
    - a ``.safetensors`` file from ``save_model`` (or from ``models.pretrained.save_safetensors``);
    - a TensorFlow checkpoint prefix of the published DLR(13) model (``.../model-523``);
    - a registry name (``names()``) that is not a file: that model untrained (random weights),
      with a warning.

    backend: a DLR op backend to force (default: automatic).
    for_inference: return ``dlr_engine.runtime.inference_form`` of the model (conv blocks fused,
      batch norm folded; no autograd; ``.source`` is the eager model), as ``extract`` does.
    """
    from . import pretrained  # imported here: it pulls in the TF bundle reader

    default = str(spec) == "default"
    path = DEFAULT_WEIGHTS if default else Path(spec)
    if not default and not path.exists() and not Path(f"{path}.index").exists():
        if str(spec) not in MODELS:
            raise FileNotFoundError(
                f"model {str(spec)!r} is not 'default', a registry name ({', '.join(names())}), "
                f"a .safetensors file nor a TF checkpoint prefix (e.g. path/to/model-523, beside "
                f"model-523.index)")
        warnings.warn(f"model {str(spec)!r} is a registry name, not weights: it is built "
                      f"untrained (random weights); pass a .safetensors file from `dlr-engine "
                      f"train` for a trained one", UserWarning, stacklevel=2)
        return _finished(get(str(spec), backend=backend), for_inference)
    if default and not path.exists():
        raise FileNotFoundError(f"the default weights {path} are missing; train them with `{DEFAULT_COMMAND}`")
    published_labels = {"tempo_logits": tempo_class_names()}  # its genre names were never published
    meta = metadata(path) if path.suffix == ".safetensors" else {}
    if path.suffix != ".safetensors":
        model, labels = pretrained.load_tf_checkpoint(path, backend=backend), published_labels
    elif meta.get("format") == pretrained.SAFETENSORS_FORMAT:
        model, labels = pretrained.load_safetensors(path, backend=backend), published_labels
    elif meta.get("format") == FORMAT:
        model = get(meta["model"], **json.loads(meta["options"]), backend=backend)
        model.load_state_dict(load_file(str(path)))
        labels = json.loads(meta["label_names"])
    else:
        raise ValueError(f"{path} was not written by dlr-engine (metadata format is "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    model.sample_rate = int(meta.get("sample_rate", PAPER.sample_rate))
    model.label_names = labels
    return _finished(model, for_inference)


def _finished(model: nn.Module, for_inference: bool) -> nn.Module:
    """``model`` in eval mode, or its inference form (``dlr_engine.runtime``)."""
    if for_inference:
        from ..runtime import inference_form  # imported here: the runtime imports the models
        return inference_form(model)
    return model.eval()
