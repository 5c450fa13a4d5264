"""dlr-bench suite ``models`` on a minimal setting (4 training clips, one epoch, 10-tree forests):
through the CLI, one row per registry model, per FCN input and per NCMS forest, every row
trained and evaluated, the JSON and markdown written."""
from __future__ import annotations

import json

import pytest

from dlr_engine.bench import cli, suite_models
from dlr_engine.models import fcn, ncms, registry

MINIMAL = suite_models.Setting(train_clips=4, val_clips=2, test_clips=4, epochs=1, trees=10)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The JSON report and markdown of ``dlr-bench models --quick`` at the minimal setting."""
    folder = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(suite_models.SETTINGS, True, MINIMAL)
        patch.setenv("DLR_BENCH_DEVICE", "cpu")
        assert cli.main(["models", "--quick", "--json", str(folder / "run.json"),
                         "--markdown", str(folder / "run.md")]) == 0
    return json.loads((folder / "run.json").read_text()), (folder / "run.md").read_text()


def test_one_ok_row_per_model_input_and_forest(report):
    data, _ = report
    rows = data["rows"]
    assert all(set(row) == set(suite_models.ROW_FIELDS) for row in rows)
    assert all(row["status"] == "ok" for row in rows), [row["note"] for row in rows]
    assert {row["registry"] for row in rows} == set(registry.names())
    fcn_inputs = [row["input"] for row in rows if row["registry"] == "fcn"]
    assert sorted(fcn_inputs) == sorted([*fcn.INPUT_KINDS, "mel+dlr"])
    forests = [row["model"] for row in rows if row["model"].startswith("ncms forest")]
    assert forests == [f"ncms forest {variant}" for variant in ncms.VARIANTS]
    for row in rows:
        assert 0.0 <= row["style_accuracy"] <= 1.0 and 0.0 <= row["tempo_accuracy"] <= 1.0
        assert row["params"] > 0
    trained = [row for row in rows if row["epochs"] is not None]
    assert len(trained) == len(suite_models.ENTRIES)
    assert all(row["epochs"] == MINIMAL.epochs and row["seconds_per_epoch"] > 0 for row in trained)


def test_header_states_the_protocol(report):
    data, markdown = report
    setting = data["machine"]["setting"]
    assert {key: setting[key] for key in ("train_clips", "val_clips", "test_clips", "epochs")} == \
           {"train_clips": 4, "val_clips": 2, "test_clips": 4, "epochs": 1}
    assert setting["command"] == "dlr-bench models --quick" and data["run"]["suites"] == ["models"]
    assert "4 training (seed 1), 2 validation (seed 2" in markdown and "4 test (seed 3" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(data["rows"])


def test_models_is_not_part_of_all_and_plots_nothing(capsys):
    assert "models" in cli.SUITES and "models" in cli.TRAINING_SUITES
    assert "every suite above but models" in cli.build_parser().epilog
    with pytest.raises(SystemExit):
        cli.main(["models", "--plot", "x.png"])
    assert "times nothing" in capsys.readouterr().err
