"""``dlr-engine plot``: four panels of a real decode, written as a valid image; short files
rejected with a message that says what to do."""
from __future__ import annotations

import argparse

import pytest
import soundfile as sf

from dlr_engine import plot_cli
from dlr_engine.data.synth import render_clip
from dlr_engine.nn import DLR

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
    args = argparse.Namespace(file=str(clip), out=str(tmp_path / "x.png"), seconds=short,
                              offset=0.0, model="none")
    with pytest.raises(ValueError, match="shorter than the .* needs; use a longer file"):
        plot_cli.run(args)
    assert not (tmp_path / "x.png").exists()


def test_plot_rejects_short_file(tmp_path):
    path = tmp_path / "short.wav"
    audio, _ = render_clip(0, 0, 2.0, RATE)
    sf.write(path, audio, RATE)
    with pytest.raises(ValueError, match=r"holds 2\.00 s of audio"):
        plot_cli.draw(path, model="none")
