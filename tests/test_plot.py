"""``dlr-engine plot``: four panels of a real decode, written as an image of the asked size and
dpi, with axis and colour-bar labels, the mel axis in Hz and the DLR's receptive-field gap
marked; short files rejected with a message that says what to do."""
from __future__ import annotations

import argparse

import pytest
import soundfile as sf
from PIL import Image

from dlr_engine import plot_cli
from dlr_engine.data.synth import render_clip
from dlr_engine.nn import DLR
from dlr_engine.spectral import MelSpectrogram

RATE = 22050
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    plot_cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("plot") / "clip.wav"
    audio, _ = render_clip(0, 0, 6.0, RATE)
    sf.write(path, audio, RATE)
    return path


@pytest.mark.parametrize("model", ["none", "default"])
def test_plot_writes_four_panel_png(clip, tmp_path, model):
    out = tmp_path / "fig.png"
    args = _parse(["plot", str(clip), "--out", str(out), "--model", model])
    assert args.func(args) == 0
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    inches = plot_cli.FIGURE_INCHES
    assert (width, height) == (inches[0] * plot_cli.FIGURE_DPI, inches[1] * plot_cli.FIGURE_DPI)
    dpi = (plot_cli.FIGURE_DPI,) * 2
    assert Image.open(out).info["dpi"] == pytest.approx(dpi, abs=0.05)  # PNG: dots per metre

    figure = plot_cli.draw(clip, model=model)
    panels = [ax for ax in figure.axes if ax.get_title()]  # the others are colour bars
    assert len(panels) == 4
    assert [ax.get_xlim() for ax in panels] == [(0.0, pytest.approx(6.0))] * 4
    dlr_image = panels[3].get_images()[0].get_array()
    assert dlr_image.shape == (128, DLR().frames(6 * 8000))
    has_classes = "style:" in figure.get_suptitle()
    assert has_classes == (model == "default")


def test_plot_offset_window(clip):
    figure = plot_cli.draw(clip, seconds=5.5, offset=0.25, model="none")
    assert figure.axes[0].get_xlim() == (0.25, pytest.approx(5.75))


def test_plot_rejects_short_window(clip, tmp_path):
    short = DLR().min_samples / 8000 - 0.1
    args = _parse(["plot", str(clip), "--out", str(tmp_path / "x.png"), "--seconds", str(short),
                   "--model", "none"])
    with pytest.raises(ValueError, match="shorter than the .* needs; use a longer file"):
        plot_cli.run(args)
    assert not (tmp_path / "x.png").exists()


def test_plot_rejects_short_file(tmp_path):
    path = tmp_path / "short.wav"
    audio, _ = render_clip(0, 0, 2.0, RATE)
    sf.write(path, audio, RATE)
    with pytest.raises(ValueError, match=r"holds 2\.00 s of audio"):
        plot_cli.draw(path, model="none")


def test_size_and_dpi_options_set_the_image(clip, tmp_path):
    out = tmp_path / "small.png"
    args = _parse(["plot", str(clip), "--out", str(out), "--model", "none", "--size", "3.5x4",
                   "--dpi", "120"])
    assert args.func(args) == 0
    image = Image.open(out)
    assert image.size == (420, 480)
    assert image.info["dpi"] == pytest.approx((120, 120), abs=0.05)


@pytest.mark.parametrize("bad", ["7", "7x", "0x3", "axb"])
def test_bad_size_is_refused_by_argparse(bad):
    with pytest.raises(SystemExit):
        _parse(["plot", "f.wav", "--out", "x.png", "--size", bad])


def test_axes_colorbars_and_the_receptive_field_gap_are_labelled(clip):
    figure = plot_cli.draw(clip, model="none", size=(6.0, 7.0))
    assert tuple(figure.get_size_inches()) == (6.0, 7.0)
    panels = [ax for ax in figure.axes if ax.get_title()]
    bars = [ax for ax in figure.axes if not ax.get_title() and ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in panels] == ["amplitude", "frequency (Hz)", "tempo (BPM)",
                                                  "branch"]
    assert panels[3].get_xlabel() == "time (s)"
    assert sorted(ax.get_ylabel() for ax in bars) == sorted(plot_cli.COLORBAR_LABELS.values())
    # the mel axis is in Hz on the mel scale: 1 kHz sits where the Slaney scale puts it
    edges = plot_cli.mel_band_edges_hz(MelSpectrogram(preset="dlr").config)
    assert panels[1].get_ylim() == pytest.approx((edges[0], edges[-1]))
    assert panels[1].get_yscale() == "function"
    assert 1000 in panels[1].get_yticks()
    # the DLR's last receptive field: hatched from the last frame's end to the window's end
    dlr = DLR()
    gap_start = dlr.frames(6 * 8000) * dlr.config.pool / 8000
    spans = [p for p in panels[3].patches if p.get_hatch() == "//"]
    assert len(spans) == 1
    to_data = spans[0].get_transform() - panels[3].transData
    xs = to_data.transform(spans[0].get_path().vertices)[:, 0]
    assert (min(xs), max(xs)) == pytest.approx((gap_start, 6.0))
    texts = [t.get_text() for t in panels[3].texts]
    assert any(f"the last {6.0 - gap_start:.2f} s" in t for t in texts)
