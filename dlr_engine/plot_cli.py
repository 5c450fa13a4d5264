"""``dlr-engine plot FILE --out FIG.png``: one track's waveform, log-mel, tempogram and DLR.

Four stacked panels on one time axis (seconds in the file), as the DLR paper's figures: the
8 kHz mono waveform, the authors' log-mel (``MelSpectrogram(preset="dlr")``), their tempogram
(``Tempogram(preset="dlr")``, y axis in BPM) and the DLR (128 channels, 31.25 frames/s) of the
model's front-end. When the model also gives style / tempo-class logits, the title names the
most probable class of each.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DEFAULT_SECONDS = 30.0
TEMPO_AXIS_BPM = (30.0, 480.0)
"""Range of the tempogram's BPM axis (log scale)."""
TEMPO_TICKS_BPM = (30, 60, 120, 240, 480)
COLUMN_RATIOS = (60, 1)
"""Widths of the panels and of their colour bars."""
FIGURE_INCHES = (10.0, 10.0)
FIGURE_DPI = 100
CLASS_OUTPUTS = (("style_logits", "style"), ("tempo_logits", "tempo"))
"""Model output key -> name shown in the title, for the top class of each."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw a track's waveform, log-mel, tempogram and DLR to an image")
    parser.add_argument("file", help="audio file (anything `extract` reads)")
    parser.add_argument("--out", required=True, help="image to write (.png, .pdf, .svg, ...)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help=f"length of the window drawn (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--offset", type=float, default=0.0,
                        help="start of the window, seconds into the file (default 0)")
    parser.add_argument("--model", default="default",
                        help="'default' (shipped model), a .safetensors / TF checkpoint path, or "
                             "'none' for an untrained DLR (random weights)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the figure to ``args.out``; raises ``ValueError`` with what to do when the window
    is too short for the model."""
    figure = draw(args.file, args.seconds, args.offset, args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=FIGURE_DPI)
    print(f"wrote {out}")
    return 0


def read_window(path: str | Path, sample_rate: int, seconds: float,
                offset: float) -> np.ndarray:
    """``seconds`` of ``path`` from ``offset`` s as mono float32 at ``sample_rate`` Hz:
    ``(samples,)``, shorter when the file ends first. Decodes only up to the window's end."""
    from .audio import AudioStream

    if seconds <= 0 or offset < 0:
        raise ValueError(f"--seconds must be > 0 and --offset >= 0, got {seconds} and {offset}")
    start = int(round(offset * sample_rate))
    stop = start + int(round(seconds * sample_rate))
    blocks, position = [], 0
    with AudioStream(path, sample_rate) as stream:
        for block in stream:
            if position + len(block) > start:
                blocks.append(block[max(0, start - position):stop - position])
            position += len(block)
            if position >= stop:
                break
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _model(spec: str):
    """(module, its DLR front-end, description) for ``--model``."""
    from .models import load_model
    from .nn import DLR

    if spec == "none":
        dlr = DLR()
        return dlr, dlr, "untrained DLR (random weights)"
    model = load_model(spec)
    if not isinstance(getattr(model, "dlr", None), DLR):
        raise ValueError(f"model {spec} has no DLR front-end ({type(model).__name__}); plot "
                         f"needs a DLR model, or use --model none")
    return model, model.dlr, f"model {spec}"


def _features(audio: np.ndarray, model) -> tuple[dict[str, np.ndarray], str]:
    """Log-mel (128, frames), tempogram (lags, frames), DLR (128, frames) and the title's
    top classes (empty when the model gives none)."""
    import torch

    from .spectral import MelSpectrogram, Tempogram

    x = torch.from_numpy(audio)[None]
    with torch.inference_mode():
        outputs = model(x)
        if not isinstance(outputs, dict):
            outputs = {"dlr": outputs}
        features = {"mel": MelSpectrogram(preset="dlr")(x)[0].numpy(),
                    "tempogram": Tempogram(preset="dlr")(x)[0].numpy(),
                    "dlr": outputs["dlr"][0].numpy()}
    labels = getattr(model, "label_names", {})
    tops = []
    for key, name in CLASS_OUTPUTS:
        if key in outputs:
            probs = torch.softmax(outputs[key][0], dim=-1)
            index = int(probs.argmax())
            names = labels.get(key, [])
            label = names[index] if index < len(names) else f"class {index}"
            tops.append(f"{name}: {label} ({float(probs[index]):.0%})")
    return features, ", ".join(tops)


def draw(path: str | Path, seconds: float = DEFAULT_SECONDS, offset: float = 0.0,
         model: str = "default"):
    """The four-panel ``matplotlib.figure.Figure`` of ``path`` (see the module docstring)."""
    from matplotlib.figure import Figure  # Agg canvas; no pyplot, no display needed
    from matplotlib.ticker import NullFormatter

    from .spectral import MelSpectrogram, Tempogram

    module, dlr, description = _model(model)
    rate = dlr.config.sample_rate
    min_samples = getattr(module, "min_samples", dlr.min_samples)  # a back-end may need more
    audio = read_window(path, rate, seconds, offset)
    if len(audio) < min_samples:
        raise ValueError(
            f"{path}: the window from {offset:g} s holds {len(audio) / rate:.2f} s of audio, "
            f"shorter than the {min_samples / rate:.2f} s ({min_samples} samples at {rate} Hz) "
            f"the {description} needs; use a longer file, a smaller --offset or a larger "
            f"--seconds")
    features, tops = _features(audio, module)

    figure = Figure(figsize=FIGURE_INCHES, layout="constrained")
    grid = figure.subplots(4, 2, width_ratios=COLUMN_RATIOS)  # column 1: colour bars
    axes, bars = grid[:, 0], grid[:, 1]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    bars[0].axis("off")  # the waveform has no colour bar; keeps the time axes aligned
    end = offset + len(audio) / rate
    title = f"{Path(path).name}, {offset:g}-{end:.2f} s; {description}"
    figure.suptitle(title + (f"\n{tops}" if tops else ""))

    axes[0].plot(offset + np.arange(len(audio)) / rate, audio, linewidth=0.3)
    axes[0].set(title=f"waveform ({rate} Hz mono)", ylabel="amplitude")

    mel = MelSpectrogram(preset="dlr").config
    frame_s = mel.hop_length / rate
    image = axes[1].imshow(features["mel"], origin="lower", aspect="auto", cmap="magma",
                           extent=(offset - frame_s / 2,
                                   offset + (features["mel"].shape[1] - 0.5) * frame_s,
                                   0, mel.n_mels))
    axes[1].set(title="log-mel (z-scored dB)", ylabel="mel band")
    figure.colorbar(image, cax=bars[1])

    tempo = Tempogram(preset="dlr").config
    frames = features["tempogram"].shape[1]
    frame_s = tempo.frame_hop * tempo.hop_length / rate
    lag_edges = np.arange(1, features["tempogram"].shape[0] + 1) - 0.5  # skip lag 0 (inf BPM)
    bpm_edges = 60.0 * rate / (tempo.hop_length * np.maximum(lag_edges, 0.5))
    time_edges = offset + (np.arange(frames + 1) - 0.5) * frame_s
    mesh = axes[2].pcolormesh(time_edges, bpm_edges, features["tempogram"][1:],
                              cmap="magma", shading="flat")
    axes[2].set(title="tempogram (onset autocorrelation)", ylabel="tempo (BPM)", yscale="log",
                ylim=TEMPO_AXIS_BPM)
    axes[2].set_yticks(TEMPO_TICKS_BPM, labels=[f"{bpm:g}" for bpm in TEMPO_TICKS_BPM])
    axes[2].yaxis.set_minor_formatter(NullFormatter())
    figure.colorbar(mesh, cax=bars[2])

    config = dlr.config
    frame_s = config.pool / rate
    image = axes[3].imshow(features["dlr"], origin="lower", aspect="auto", cmap="magma",
                           extent=(offset, offset + features["dlr"].shape[1] * frame_s,
                                   0, config.out_channels))
    axes[3].set_yticks([(i + 0.5) * config.channels for i in range(config.n_branches)],
                       labels=[f"d={d}" for d in config.dilations])
    for i in range(1, config.n_branches):
        axes[3].axhline(i * config.channels, color="white", linewidth=0.5)
    axes[3].set(title=f"DLR ({config.out_channels} channels; frame t reads the next "
                      f"{config.receptive_field / rate:.2f} s)",
                ylabel="branch", xlabel="time (s)")
    axes[0].set_xlim(offset, end)
    figure.colorbar(image, cax=bars[3])
    return figure
