"""``dlr-engine plot FILE --out FIG.png``: one track's waveform, log-mel, tempogram and DLR.

Four stacked panels on one time axis (seconds in the file), as the DLR paper's figures: the
8 kHz mono waveform, the authors' log-mel (``MelSpectrogram(preset="dlr")``, y axis in Hz on
the mel scale), their tempogram (``Tempogram(preset="dlr")``, y axis in BPM) and the DLR (128
channels, 31.25 frames/s) of the model's front-end, each colour bar labelled with its unit. The
DLR has no frame for the last receptive field of the window (a frame reads the next 4.1 s):
that span is hatched and labelled. When the model also gives style / tempo-class logits, the
title names the most probable class of each. ``--size`` (inches) and ``--dpi`` set the image.
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
FIGURE_INCHES = (7.0, 8.0)
"""Default ``--size``: width x height in inches (a two-column paper's full width)."""
FIGURE_DPI = 300
"""Default ``--dpi`` (print resolution)."""
MEL_TICKS_HZ = (100, 250, 500, 1000, 2000, 3000)
COLORBAR_LABELS = {"mel": "z-scored dB", "tempogram": "autocorrelation / frame max",
                   "dlr": "mean ReLU activation"}
CLASS_OUTPUTS = (("style_logits", "style"), ("tempo_logits", "tempo"))
"""Model output key -> name shown in the title, for the top class of each."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw a track's waveform, log-mel, tempogram and DLR to an image",
        description=" ".join(__doc__.split("\n\n")[1].split()))
    parser.add_argument("file", help="audio file (anything `extract` reads)")
    parser.add_argument("--out", required=True, help="image to write (.png, .pdf, .svg, ...)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help="length of the window drawn")
    parser.add_argument("--offset", type=float, default=0.0,
                        help="start of the window, seconds into the file")
    parser.add_argument("--size", type=figure_size, default=FIGURE_INCHES, metavar="WxH",
                        help="figure width x height in inches, e.g. 3.5x5")
    parser.add_argument("--dpi", type=float, default=FIGURE_DPI,
                        help="dots per inch of a raster image (.png)")
    parser.add_argument("--model", default="default",
                        help="'default' (shipped model), a .safetensors / TF checkpoint path, or "
                             "'none' for an untrained DLR (random weights)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the figure to ``args.out``; raises ``ValueError`` with what to do when the window
    is too short for the model."""
    if args.dpi <= 0:
        raise ValueError(f"--dpi must be positive, got {args.dpi:g}")
    figure = draw(args.file, args.seconds, args.offset, args.model, args.size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=args.dpi)
    print(f"wrote {out}")
    return 0


def figure_size(text: str) -> tuple[float, float]:
    """``"7x8"`` -> (7.0, 8.0) inches (``--size``)."""
    try:
        width, height = (float(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in inches, e.g. 7x8")
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be positive")
    return width, height


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


def mel_band_edges_hz(config) -> np.ndarray:
    """(n_mels + 1,) Hz: the edges of the mel bands of a ``MelConfig``, halfway (in mel) between
    the filters' centres."""
    import torch

    from .ops.melspec_reference import hz_to_mel, mel_to_hz

    fmax = config.sr / 2 if config.fmax is None else config.fmax
    low, high = hz_to_mel(torch.tensor([config.fmin, fmax], dtype=torch.float64), config.htk)
    step = (high - low) / (config.n_mels + 1)  # the filters' centres are n_mels of n_mels + 2
    edges = low + step / 2 + step * torch.arange(config.n_mels + 1, dtype=torch.float64)
    return mel_to_hz(edges, config.htk).numpy()


def mel_axis_scale(htk: bool) -> tuple:
    """(Hz -> mel, mel -> Hz) for matplotlib's "function" axis scale."""
    import torch

    from .ops.melspec_reference import hz_to_mel, mel_to_hz

    def convert(function):
        return lambda values: function(torch.as_tensor(np.asarray(values, np.float64)),
                                       htk).numpy()
    return convert(hz_to_mel), convert(mel_to_hz)


def draw(path: str | Path, seconds: float = DEFAULT_SECONDS, offset: float = 0.0,
         model: str = "default", size: tuple[float, float] = FIGURE_INCHES):
    """The four-panel ``matplotlib.figure.Figure`` of ``path`` (see the module docstring),
    ``size`` (width, height) inches."""
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

    figure = Figure(figsize=size, layout="constrained")
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
    time_edges = offset + (np.arange(features["mel"].shape[1] + 1) - 0.5) * frame_s
    hz_edges = mel_band_edges_hz(mel)
    image = axes[1].pcolormesh(time_edges, hz_edges, features["mel"], cmap="magma",
                               shading="flat", rasterized=True)
    axes[1].set_yscale("function", functions=mel_axis_scale(mel.htk))
    axes[1].set(title=f"log-mel ({mel.n_mels} bands)", ylabel="frequency (Hz)",
                ylim=(hz_edges[0], hz_edges[-1]))
    axes[1].set_yticks([hz for hz in MEL_TICKS_HZ if hz_edges[0] <= hz <= hz_edges[-1]])
    axes[1].yaxis.set_minor_formatter(NullFormatter())
    figure.colorbar(image, cax=bars[1], label=COLORBAR_LABELS["mel"])

    tempo = Tempogram(preset="dlr").config
    frames = features["tempogram"].shape[1]
    frame_s = tempo.frame_hop * tempo.hop_length / rate
    lag_edges = np.arange(1, features["tempogram"].shape[0] + 1) - 0.5  # skip lag 0 (inf BPM)
    bpm_edges = 60.0 * rate / (tempo.hop_length * np.maximum(lag_edges, 0.5))
    time_edges = offset + (np.arange(frames + 1) - 0.5) * frame_s
    mesh = axes[2].pcolormesh(time_edges, bpm_edges, features["tempogram"][1:],
                              cmap="magma", shading="flat", rasterized=True)
    axes[2].set(title="tempogram (onset autocorrelation)", ylabel="tempo (BPM)", yscale="log",
                ylim=TEMPO_AXIS_BPM)
    axes[2].set_yticks(TEMPO_TICKS_BPM, labels=[f"{bpm:g}" for bpm in TEMPO_TICKS_BPM])
    axes[2].yaxis.set_minor_formatter(NullFormatter())
    figure.colorbar(mesh, cax=bars[2], label=COLORBAR_LABELS["tempogram"])

    config = dlr.config
    frame_s = config.pool / rate
    dlr_end = offset + features["dlr"].shape[1] * frame_s
    image = axes[3].imshow(features["dlr"], origin="lower", aspect="auto", cmap="magma",
                           extent=(offset, dlr_end, 0, config.out_channels))
    # the last receptive field has no frame of its own: hatch it rather than leave it blank
    axes[3].axvspan(dlr_end, end, facecolor="none", edgecolor="0.5", hatch="//", linewidth=0)
    axes[3].text((dlr_end + end) / 2, config.out_channels / 2,
                 f"no frame:\nthe last {end - dlr_end:.2f} s\nare read by\nearlier frames",
                 ha="center", va="center", fontsize="small")
    axes[3].set_yticks([(i + 0.5) * config.channels for i in range(config.n_branches)],
                       labels=[f"d={d}" for d in config.dilations])
    for i in range(1, config.n_branches):
        axes[3].axhline(i * config.channels, color="white", linewidth=0.5)
    axes[3].set(title=f"DLR ({config.out_channels} channels; frame t reads the next "
                      f"{config.receptive_field / rate:.2f} s)",
                ylabel="branch", xlabel="time (s)")
    axes[0].set_xlim(offset, end)
    figure.colorbar(image, cax=bars[3], label=COLORBAR_LABELS["dlr"])
    return figure
