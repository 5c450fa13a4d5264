"""The ``dlr-engine`` command line: defaults shown in every --help, --version, plain-text help,
a description for every subcommand, one-line errors for a device this torch cannot use, and the
lazy top-level exports."""
from __future__ import annotations

import argparse

import pytest
import torch

import dlr_engine
from dlr_engine import cli
from dlr_engine.train.cli import DEFAULTS


def subcommand_parsers(parser: argparse.ArgumentParser, prefix: str = "dlr-engine"):
    """(command line, parser) of every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from subcommand_parsers(sub, f"{prefix} {name}")


PARSERS = dict(subcommand_parsers(cli.build_parser()))


def test_train_help_shows_the_defaults():
    """The issue's case: the hidden 10 s default of ``train --seconds``."""
    text = " ".join(PARSERS["dlr-engine train"].format_help().split())
    assert f"clip length in seconds (default: {DEFAULTS.seconds})" in text
    assert f"--epochs EPOCHS (default: {DEFAULTS.epochs})" in text  # no help text of its own
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_subcommand_has_a_plain_text_description(command):
    parser = PARSERS[command]
    assert parser.description, f"{command} has no description"
    text = parser.format_help()
    assert "``" not in text and ":class:" not in text
    assert "(default" in text or not any(cli._has_default(a) for a in parser._actions
                                          if a.option_strings and a.dest != "help")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dlr-engine {dlr_engine.__version__}"


def test_plain_text_turns_rst_literals_into_quotes():
    assert cli.plain_text("see ``trainer.TrainConfig`` and :class:`DLR`") == \
        "see 'trainer.TrainConfig' and 'DLR'"


@pytest.mark.parametrize("argv", [["extract", "missing.ogg", "--out", "out"],
                                  ["train", "tagger", "--synthetic", "4"]])
def test_cuda_device_without_cuda_is_a_one_line_error(monkeypatch, capsys, tmp_path, argv):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--device cuda: this torch was built without CUDA" in err and "--device cpu" in err
    assert not list(tmp_path.iterdir())  # nothing ran


def test_unknown_device_is_a_one_line_error(capsys):
    assert cli.main(["extract", "missing.ogg", "--out", "out", "--device", "gpu0"]) == 2
    assert "--device 'gpu0' is not a device" in capsys.readouterr().err


def test_lazy_exports_include_models_and_are_listed():
    names = dir(dlr_engine)
    for name in ("DLR", "MelSpectrogram", "extract", "load_model", "models", "ops"):
        assert name in names
    assert "fcn" in dlr_engine.__getattr__("models").names()  # imported on first use
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dlr_engine.__getattr__("nope")
