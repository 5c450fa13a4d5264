"""Training: metrics, the fused cpu backend against the reference in a training step, over-fitting,
exact resume, the FCN tagger's inputs, and the model registry (incl. the shipped default)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from test_tf_bundle import CHECKPOINT, reference_dir

from dlr_engine.data.synth import STYLE_NAMES, TAG_NAMES, SynthRhythmDataset, write_corpus
from dlr_engine.models import get, load_model, names
from dlr_engine.models.pretrained import load_tf_checkpoint
from dlr_engine.models import registry
from dlr_engine.models.registry import save_model, tempo_class_names
from dlr_engine.train import metrics
from dlr_engine.train.cli import register
from dlr_engine.train.datasets import InMemory
from dlr_engine.train.tasks import TASKS, SourceTask, tempo_targets
from dlr_engine.train.trainer import TrainConfig, Trainer, build_model, train
from dlr_engine.train.augment import Augmented
from dlr_engine.data.drums import NO_STYLE
from test_drums import needs_soundfont
import torch.nn.functional as F

SAMPLE_RATE = 8000
SECONDS = 6.0  # 48000 samples: 58 DLR frames, enough for the conv blocks' 32
SMALL_DLR = {"channels": 8}  # 32 DLR channels instead of 128: a narrower, faster back-end
AUGMENTED_SECONDS = 5.5  # cropped from the 6 s clips after a rate change of up to 1.08; >= 5.14 s for the heads


@pytest.fixture(scope="module")
def clips() -> InMemory:
    """32 synthetic clips of 6 s at 8 kHz (every style and tempo class appears)."""
    return InMemory(SynthRhythmDataset(32, seed=5, seconds=SECONDS, sample_rate=SAMPLE_RATE), progress=False)


def _roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney: P(score of a positive > score of a negative), ties count half."""
    pos, neg = score[truth == 1], score[truth == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def _average_precision(truth: np.ndarray, score: np.ndarray) -> float:
    """Mean over positives of the precision at that positive's score threshold."""
    precisions = [(truth[score >= s] == 1).mean() for s in score[truth == 1]]
    return float(np.mean(precisions))


def test_metrics_match_independent_implementations():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(np.mean(y_true == y_pred))
    confusion = np.asarray(metrics.confusion_matrix(y_true, y_pred, 5))
    expected = np.zeros((5, 5), int)
    np.add.at(expected, (y_true, y_pred), 1)
    np.testing.assert_array_equal(confusion, expected)

    tags = (rng.random((120, 6)) < 0.3).astype(int)
    tags[:, 5] = 0  # a tag absent from this set: undefined, left out of the macro averages
    scores = np.round(tags * 0.4 + rng.random((120, 6)), 2)  # rounded: ties happen
    result = metrics.tag_metrics(tags, scores)
    roc = [_roc_auc(tags[:, t], scores[:, t]) for t in range(5)]
    pr = [_average_precision(tags[:, t], scores[:, t]) for t in range(5)]
    np.testing.assert_allclose(result["roc_auc_per_tag"][:5], roc, rtol=1e-12)
    np.testing.assert_allclose(result["pr_auc_per_tag"][:5], pr, rtol=1e-12)
    assert np.isnan(result["roc_auc_per_tag"][5]) and np.isnan(result["pr_auc_per_tag"][5])
    assert result["roc_auc_macro"] == pytest.approx(np.mean(roc))
    assert result["pr_auc_macro"] == pytest.approx(np.mean(pr))
    assert result["roc_auc_micro"] == pytest.approx(_roc_auc(tags.ravel(), scores.ravel()))
    assert result["pr_auc_micro"] == pytest.approx(_average_precision(tags.ravel(), scores.ravel()))


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value - reference).norm() / reference.norm()).item()


def test_training_step_fused_cpu_matches_reference(tmp_path, clips):
    audio, labels = clips.audio[:4], {key: value[:4] for key, value in clips.labels.items()}
    task = SourceTask()
    results = {}
    for backend in ("cpu", "torch"):
        torch.manual_seed(0)
        model = get("dlr_source", **task.model_options(), backend=backend)
        trainer = Trainer(task, model, clips, clips, TrainConfig(out=str(tmp_path / backend), progress=False))
        loss, _ = trainer.step(audio, labels)
        results[backend] = (loss, {name: p.grad.clone() for name, p in model.named_parameters()})
    loss, grads = results["cpu"]
    ref_loss, ref_grads = results["torch"]
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    for name, grad in grads.items():
        assert _relative_error(grad, ref_grads[name]) < 1e-4, name


def test_tiny_run_overfits_32_clips(tmp_path, clips):
    task = SourceTask()
    torch.manual_seed(0)
    model = get("dlr_source", **task.model_options(), backend="cpu")
    config = TrainConfig(out=str(tmp_path), epochs=12, batch_size=8, lr=3e-3, schedule="none", progress=False)
    few = InMemory(torch.utils.data.Subset(clips, range(4)), progress=False)  # validation is not the point here
    history = Trainer(task, model, clips, few, config).fit()
    losses = [record["train_loss"] for record in history]
    assert losses[-1] < 0.4 * losses[0], [round(loss, 3) for loss in losses]


def _small_trainer(out, clips, trainer_class=Trainer, seed=0, augment=False) -> Trainer:
    task = SourceTask()
    torch.manual_seed(seed)
    model = get("dlr_source", **task.model_options(), dlr=SMALL_DLR, backend="cpu")
    config = TrainConfig(out=str(out), epochs=3, batch_size=4, optimizer="adamw", weight_decay=0.01,
                         augment=augment, progress=False)
    subset = InMemory(torch.utils.data.Subset(clips, range(8)), progress=False)
    training = Augmented(subset, AUGMENTED_SECONDS, seed=config.seed) if augment else subset
    return trainer_class(task, model, training, subset, config)


class _Killed(Exception):
    pass


class _KilledAfterEpoch2(Trainer):
    """A run that dies right after writing the checkpoint of epoch 2."""

    def save_checkpoint(self, best: bool) -> None:
        super().save_checkpoint(best)
        if self.epoch == 2:
            raise _Killed


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_resume_continues_bit_identically(tmp_path, clips, augment):
    straight = _small_trainer(tmp_path / "straight", clips, augment=augment)
    straight.fit()
    with pytest.raises(_Killed):
        _small_trainer(tmp_path / "resumed", clips, _KilledAfterEpoch2, augment=augment).fit()
    resumed = _small_trainer(tmp_path / "resumed", clips, seed=1, augment=augment)  # the checkpoint must win
    resumed.fit(resume=True)
    for (name, value), (_, expected) in zip(resumed.module.state_dict().items(),
                                            straight.module.state_dict().items()):
        assert torch.equal(value, expected), name
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    assert (tmp_path / "resumed" / "log.jsonl").read_text().count("\n") == 3


def test_init_starts_from_the_given_weights_and_refuses_another_architecture(tmp_path):
    config = TrainConfig(out=str(tmp_path), model_options={"dlr": SMALL_DLR}, seed=3)
    start = build_model(config)
    save_model(start, tmp_path / "start.safetensors")
    tuned = build_model(TrainConfig(out=str(tmp_path), model_options={"dlr": SMALL_DLR}, seed=4,
                                    init=str(tmp_path / "start.safetensors")))
    for (name, value), expected in zip(tuned.state_dict().items(), start.state_dict().values()):
        assert torch.equal(value, expected), name
    with pytest.raises(ValueError, match="same architecture"):
        build_model(TrainConfig(out=str(tmp_path), init=str(tmp_path / "start.safetensors")))  # 128 channels


def test_clips_without_a_style_train_the_tempo_head_only():
    task = SourceTask()
    torch.manual_seed(0)
    outputs = {"style_logits": torch.randn(6, len(STYLE_NAMES), requires_grad=True),
               "tempo_logits": torch.randn(6, 4, requires_grad=True)}
    style = torch.tensor([2, NO_STYLE, 5, NO_STYLE, NO_STYLE, 0])
    tempo = torch.tensor([0, 1, 2, 3, 1, 0])
    loss, parts = task.loss(outputs, {"style": style, "tempo_class": tempo})
    has = style != NO_STYLE
    assert parts["style_loss"] == pytest.approx(F.cross_entropy(outputs["style_logits"][has], style[has]).item())
    assert parts["tempo_class_loss"] == pytest.approx(F.cross_entropy(outputs["tempo_logits"], tempo).item())
    loss.backward()
    assert (outputs["style_logits"].grad[~has] == 0).all() and (outputs["style_logits"].grad[has] != 0).any()
    none = torch.full((6,), NO_STYLE)
    loss, parts = task.loss(outputs, {"style": none, "tempo_class": tempo})
    assert parts["style_loss"] == 0.0 and torch.isfinite(loss)
    predictions = {key: value.detach().numpy() for key, value in outputs.items()}
    result = task.metrics(predictions, {"style": style.numpy(), "tempo_class": tempo.numpy()})
    assert np.sum(result["style_confusion"]) == 3 and np.sum(result["tempo_class_confusion"]) == 6
    assert result["style_accuracy"] == metrics.accuracy(style[has].numpy(), predictions["style_logits"][has.numpy()].argmax(1))
    result = task.metrics(predictions, {"style": none.numpy(), "tempo_class": tempo.numpy()})
    assert "style_accuracy" not in result and result["score"] == result["tempo_class_accuracy"]


def test_tempo_targets_are_soft_only_near_a_class_boundary():
    """Far from a boundary the target is the clip's class; on one it is split evenly between the
    two classes; in between it leans to the clip's own class; rows are distributions. The loss
    with a ``bpm`` uses them, without one the hard class."""
    from dlr_engine.config import TEMPO_CLASS_BOUNDARIES_BPM
    from dlr_engine.data.synth import tempo_class

    bpm = torch.tensor([60.0, 130.0, 168.0, 230.0, *TEMPO_CLASS_BOUNDARIES_BPM, 110.0, 152.0, 190.0])
    targets = tempo_targets(bpm)
    assert targets.shape == (len(bpm), 4) and torch.isfinite(targets).all()
    assert torch.allclose(targets.sum(1), torch.ones(len(bpm)))
    assert torch.allclose(targets[:4], torch.eye(4), atol=1e-4)
    for row, edge in enumerate(TEMPO_CLASS_BOUNDARIES_BPM, start=4):
        assert targets[row, row - 4].item() == pytest.approx(0.5) and targets[row, row - 3].item() == pytest.approx(0.5)
    for row in range(7, 10):
        own = tempo_class(bpm[row].item())
        assert 0.5 < targets[row, own].item() < 0.99 and targets[row].argmax().item() == own
    task = SourceTask()
    torch.manual_seed(0)
    outputs = {"style_logits": torch.randn(10, len(STYLE_NAMES)), "tempo_logits": torch.randn(10, 4)}
    labels = {"style": torch.zeros(10, dtype=torch.int64),
              "tempo_class": torch.tensor([tempo_class(b) for b in bpm.tolist()])}
    _, hard = task.loss(outputs, labels)
    _, soft = task.loss(outputs, {**labels, "bpm": bpm})
    assert hard["tempo_class_loss"] == pytest.approx(F.cross_entropy(outputs["tempo_logits"], labels["tempo_class"]).item())
    assert soft["tempo_class_loss"] == pytest.approx(F.cross_entropy(outputs["tempo_logits"], targets).item())
    assert soft["tempo_class_loss"] != pytest.approx(hard["tempo_class_loss"])


def test_smoke_run_on_both_sources_with_augmentation(tmp_path):
    """The default model's recipe in miniature: synthetic + SoundFont clips, augmented; the
    validation reports style over the synthetic clips and tempo over all of them."""
    needs_soundfont()
    config = TrainConfig(out=str(tmp_path), synthetic=8, val_synthetic=8, soundfont=8, val_soundfont=8,
                         augment=True, stretch=[0.85, 1.2], seconds=AUGMENTED_SECONDS, epochs=1, batch_size=8,
                         model_options={"dlr": SMALL_DLR}, progress=False)
    trainer = train(config)
    assert isinstance(trainer.train_set, Augmented) and len(trainer.train_set) == 16
    assert trainer.train_set.rates == config.stretch == (0.85, 1.2)
    source_audio, _ = trainer.train_set.dataset[12]  # rendered long enough for the widest stretch
    assert len(source_audio) >= AUGMENTED_SECONDS * 1.2 * SAMPLE_RATE
    audio, labels = trainer.train_set[12]  # a SoundFont clip, augmented
    assert audio.shape == (int(AUGMENTED_SECONDS * SAMPLE_RATE),) and labels["style"].item() == NO_STYLE
    val = trainer.history[0]["val"]
    assert np.sum(val["style_confusion"]) == 8 and np.sum(val["tempo_class_confusion"]) == 16
    assert np.isfinite(trainer.history[0]["train_loss"])
    assert load_model(tmp_path / "best.safetensors").label_names["style_logits"] == list(STYLE_NAMES)


def test_cli_trains_a_tagger_on_a_folder(tmp_path):
    write_corpus(tmp_path / "corpus", n=6, seed=3, seconds=SECONDS, sample_rate=SAMPLE_RATE, progress=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "tagger", "--data", str(tmp_path / "corpus"), "--val-fraction", "0.5",
                              "--input", "dlr", "--model-options", json.dumps({"dlr": SMALL_DLR}),
                              "--epochs", "1", "--batch-size", "3", "--seconds", str(SECONDS),
                              "--backend", "cpu", "--out", str(tmp_path / "run"), "--no-progress"])
    assert args.func(args) == 0
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert record["epoch"] == 1 and {"roc_auc_macro", "pr_auc_micro"} <= set(record["val"])
    model = load_model(tmp_path / "run" / "best.safetensors")
    assert model.label_names == {"tag_logits": list(TAG_NAMES)}
    assert model.config()["input"] == "dlr" and model.config()["dlr"]["channels"] == SMALL_DLR["channels"]


@pytest.mark.parametrize("input", ["mel", "dlr", "tempogram", "mel+dlr"])
def test_fcn_tagger_shapes(input):
    if input != "dlr":
        pytest.importorskip("dlr_engine.spectral")
    torch.manual_seed(0)
    model = get("fcn", n_tags=7, input=input, backend="cpu").eval()
    x = torch.rand(3, int(SECONDS * SAMPLE_RATE)) - 0.5
    out = model(x)
    kinds = input.split("+")
    assert out["tag_logits"].shape == (3, 7)
    assert out["embedding"].shape == (3, 32 * len(kinds))
    for kind in kinds:
        assert out[kind].dim() == 3 and out[kind].shape[0] == 3
    if "dlr" in kinds:
        assert out["dlr"].shape == (3, 128, 58)
    with pytest.raises(ValueError, match="frames are too few"):
        model(x[:, :SAMPLE_RATE // 2] if input != "dlr" else x[:, :40000])


def test_fcn_rejects_unknown_input():
    with pytest.raises(ValueError, match="mel\\+dlr"):
        get("fcn", input="mfcc")


def test_registry_round_trip(tmp_path):
    assert {"dlr_source", "fcn"} <= set(names())
    task = SourceTask()
    torch.manual_seed(0)
    model = get("dlr_source", **task.model_options(), dlr=SMALL_DLR, backend="cpu").eval()
    save_model(model, tmp_path / "m.safetensors", label_names=task.label_names, metadata={"note": "test"})
    loaded = load_model(tmp_path / "m.safetensors", backend="cpu")
    x = torch.rand(2, int(SECONDS * SAMPLE_RATE))
    with torch.no_grad():
        expected, got = model(x), loaded(x)
    assert not loaded.training and loaded.sample_rate == SAMPLE_RATE
    assert loaded.label_names == task.label_names
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    with pytest.raises(ValueError, match="unknown model"):
        get("resnet")


def test_load_model_reads_the_published_tf_checkpoint():
    model = load_model(reference_dir() / CHECKPOINT, backend="cpu")
    direct = load_tf_checkpoint(reference_dir() / CHECKPOINT)
    assert not model.training and model.sample_rate == SAMPLE_RATE
    assert model.label_names == {"tempo_logits": tempo_class_names()}
    for (name, value), (_, expected) in zip(model.state_dict().items(), direct.state_dict().items()):
        assert torch.equal(value, expected), name


def test_shipped_default_model():
    model = load_model("default")
    assert not model.training and model.sample_rate == SAMPLE_RATE
    assert model.label_names == {"style_logits": list(STYLE_NAMES), "tempo_logits": tempo_class_names()}
    audio = SynthRhythmDataset(2, seed=99, seconds=SECONDS)[1][0]
    with torch.no_grad():
        out = model(torch.stack([audio, audio.flip(0)]))
    assert out["embedding"].shape == (2, 128)
    assert out["style_logits"].shape == (2, len(STYLE_NAMES))
    assert out["tempo_logits"].shape == (2, 4)
    assert out["dlr"].shape == (2, 128, 58)
    assert torch.isfinite(out["tempo_logits"]).all()


def test_shipped_default_model_records_its_recipe_and_both_evaluations():
    meta = registry.metadata(registry.DEFAULT_WEIGHTS)
    assert meta["training_command"].startswith(registry.DEFAULT_COMMAND)
    training, corpus = json.loads(meta["training"]), json.loads(meta["train_corpus"])
    assert training["synthetic"] == corpus["clips"] and training["data_seed"] == corpus["corpus_seed"]
    for key, kinds in (("held_out", {"synth"}), ("out_of_source", {"soundfont out_of_source"})):
        tests = json.loads(meta[key])
        assert tests and {test["source"] for test in tests} == kinds
        for test in tests:
            confusion = np.array(test["tempo_class_confusion"])
            assert confusion.shape == (4, 4) and confusion.sum() == test["clips"]
            assert test["tempo_class_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
            if key == "held_out":
                assert np.sum(test["style_confusion"]) == test["clips"]


AT_8KHZ = {"mcclstm": {"sample_rate": 8000}, "ncms": {"sample_rate": 8000}}
"""Options of the families whose default sample rate is not the trainer's 8 kHz."""


@pytest.mark.parametrize("task_name", ["source-task", "tagger"])
@pytest.mark.parametrize("family", sorted([*registry.FAMILIES, "fcn"]))
def test_every_family_builds_for_each_task_with_only_its_heads(tmp_path, task_name, family):
    options = AT_8KHZ.get(family, {})
    config = TrainConfig(task=task_name, model=family, model_options=options, out=str(tmp_path),
                         progress=False)
    model = build_model(config)
    task = TASKS[task_name]()
    heads = {key for key in task.label_names}
    samples = max(getattr(model, "min_samples", 0), 48000)
    with torch.no_grad():
        outputs = model.eval()(torch.randn(2, samples))
    assert heads <= outputs.keys()
    assert not ({"tag_logits", "style_logits", "tempo_logits"} - heads) & outputs.keys()
    for key in heads:
        assert outputs[key].shape == (2, len(task.label_names[key]))


def test_family_at_another_sample_rate_is_refused(tmp_path):
    config = TrainConfig(model="mcclstm", out=str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="sample_rate"):
        build_model(config)
