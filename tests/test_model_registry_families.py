"""The literature's families by name (``dlr_engine.models.families``): built by the registry,
raw audio in at their own sample rate, dict out; saved and loaded; run by ``extract``.
Small options keep every model tiny."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from dlr_engine import extract
from dlr_engine.data.synth import render_clip
from dlr_engine.models import families, ncms, registry

SMALL_DLR = {"n_branches": 2, "channels": 4, "kernel_size": 4, "dilations": [1, 4], "pool": 64}
SMALL = {
    "crnn": {"n_tags": 5, "n_mels": 16, "channels": [4, 4], "pools": [[2, 2], [2, 2]],
             "gru_units": 8, "gru_layers": 1},
    "samplecnn": {"n_tags": 5, "first_channels": 4, "block_channels": [4, 4, 4, 4]},
    "pons": {"n_styles": 3, "n_mels": 12, "frames": 20, "filters": 2, "timbre_bins": 8,
             "temporal_frames": 6},
    "mcclstm": {"n_styles": 3, "filters": 2, "fc_units": 8, "lstm_units": 4},
    "pooled": {"n_styles": 3, "n_tempo_classes": 4, "pooling": "attention", "dlr": SMALL_DLR},
    "ncms": {"n_styles": 3, "n_tempo_classes": 4, "variant": "combined", "hidden": [8, 6]},
    "songsummary": {"n_tags": 5, "encoder": "crnn", "segment_seconds": 2.0, "rnn_units": 8, "mlp_units": 8,
                    "encoder_options": {"n_mels": 16, "channels": [4, 4], "pools": [[2, 2], [2, 2]],
                                        "gru_units": 8, "gru_layers": 1}},
}
"""registry name -> small constructor options."""
HEADS = {"crnn": {"tag_logits": 5}, "samplecnn": {"tag_logits": 5}, "pons": {"style_logits": 3},
         "mcclstm": {"style_logits": 3}, "pooled": {"style_logits": 3, "tempo_logits": 4},
         "ncms": {"style_logits": 3, "tempo_logits": 4}, "songsummary": {"tag_logits": 5}}
OTHER_OUTPUTS = {"embedding", "dlr", "ncms_features"}
"""Outputs besides the heads (``dlr``: pooled; ``ncms_features``: ncms)."""
CLIP_SECONDS = 8.0
CLIP_RATE = 8000
SEGMENT_SECONDS = {"ncms": 8.0}
"""extract's window per family (default 4 s); ncms needs 5 s of audio."""


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models on a shared 2-core machine: a second intra-op thread only adds stalls."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str):
    torch.manual_seed(0)
    return registry.get(name, **SMALL[name])


def test_every_family_is_registered():
    assert set(families.FAMILIES) <= set(registry.names())
    assert set(SMALL) == set(families.FAMILIES)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_raw_audio_in_dict_out(name):
    model = build(name).eval()
    assert registry.name_of(model) == name and model.label_names == {}
    samples = model.min_samples + model.sample_rate // 3          # not a multiple of any hop
    with torch.no_grad():
        out = model(torch.randn(3, samples))
    assert out["embedding"].shape == (3, model.embedding_dim)
    for key, size in HEADS[name].items():
        assert out[key].shape == (3, size) and torch.isfinite(out[key]).all()
    assert set(out) - OTHER_OUTPUTS == set(HEADS[name])
    with pytest.raises(ValueError, match="too few"):
        model(torch.randn(1, model.min_samples - 1))


def test_sample_rates_and_minimum_inputs():
    """samplecnn: 59049 samples (~7.4 s at 8 kHz); mcclstm: the paper's 44.1 kHz with one
    80-frame chunk at hop 1024 as its minimum, the same durations at 8 kHz."""
    assert registry.get("samplecnn").min_samples == 3 ** 10 == 59049
    assert registry.get("crnn").sample_rate == registry.get("pons").sample_rate == 8000
    paper = registry.get("mcclstm", filters=2, fc_units=8, lstm_units=4)
    assert paper.sample_rate == 44100 and paper.mel.config.n_fft == 2048
    assert paper.min_samples == 79 * 1024
    low = registry.get("mcclstm", filters=2, fc_units=8, lstm_units=4, sample_rate=8000)
    assert low.sample_rate == 8000
    assert low.min_samples / 8000 == pytest.approx(paper.min_samples / 44100, rel=0.01)


def test_heads_are_chosen_by_options():
    model = registry.get("crnn", **{**SMALL["crnn"], "n_tags": 0, "n_styles": 2, "n_tempo_classes": 4})
    assert sorted(model.heads) == ["style_logits", "tempo_logits"]
    with pytest.raises(ValueError, match="at least one"):
        registry.get("pons", **{**SMALL["pons"], "n_styles": 0})


@pytest.mark.parametrize("name", ["pooled", "mcclstm", "ncms", "songsummary"])
def test_save_load_round_trip(tmp_path, name):
    model = build(name).eval()
    key, size = next(iter(HEADS[name].items()))
    labels = {key: [f"label{i}" for i in range(size)]}
    path = tmp_path / f"{name}.safetensors"
    registry.save_model(model, path, label_names=labels)
    loaded = registry.load_model(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    assert loaded.sample_rate == model.sample_rate and loaded.label_names == labels
    x = torch.randn(2, model.min_samples + 100)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[key], model(x)[key])


@pytest.mark.parametrize("name", ["ncms", "songsummary"])
def test_every_parameter_learns(name):
    """No dead weights (the NCMS DNNs' and the encoder's own output layers are removed), so
    multi-process training (DDP) sees a gradient for every parameter."""
    model = build(name).train()
    out = model(torch.randn(2, 2 * model.min_samples))  # two segments: the GRU's recurrence too
    sum(value.sum() for key, value in out.items() if key.endswith("_logits")).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("down", [False, True])
def test_fft_resample_keeps_a_sine(down):
    """8 kHz <-> 22.05 kHz: a 440 Hz sine of whole periods comes out as the same sine."""
    rates = (22050, 8000) if down else (8000, 22050)
    seconds = 0.5
    sine = [torch.sin(2 * torch.pi * 440 * torch.arange(int(seconds * r), dtype=torch.float64) / r)
            for r in rates]
    out = families.fft_resample(sine[0][None], *rates)[0]
    assert out.shape == sine[1].shape
    torch.testing.assert_close(out, sine[1], atol=1e-9, rtol=0)


def test_ncms_features_are_the_forests_input():
    """At 22.05 kHz the family's ``ncms_features`` are ``models.ncms``' per-segment temporal and
    spectral features of its DNNs, and at 8 kHz those of the clip resampled to 22.05 kHz."""
    model = build("ncms").eval()
    x = torch.randn(2, model.min_samples + 5000)
    with torch.no_grad():
        expected = torch.cat([ncms.temporal_features(model.dnns["temporal"], x),
                              ncms.spectral_features(model.dnns["spectral"], x)], dim=-1)
        torch.testing.assert_close(model(x)["ncms_features"], expected)
        low = registry.get("ncms", **SMALL["ncms"], sample_rate=CLIP_RATE).eval()
        low.load_state_dict(model.state_dict())
        clip = torch.randn(2, low.min_samples)
        resampled = families.fft_resample(clip, CLIP_RATE, 22050)
        assert resampled.shape[1] >= model.min_samples
        torch.testing.assert_close(low(clip)["ncms_features"], model(resampled)["ncms_features"])


def test_songsummary_segments_and_errors():
    """The song is cut into whole segments (a shorter tail dropped), each encoded separately."""
    model = build("songsummary").eval()
    segment = model.segment_samples
    assert segment == 2 * model.sample_rate == model.min_samples
    x = torch.randn(1, 3 * segment)
    with torch.no_grad():
        out = model(torch.cat([x, torch.randn(1, segment // 2)], dim=1))["embedding"]
        torch.testing.assert_close(out, model(x)["embedding"])
        assert not torch.allclose(out, model(x.flip(1))["embedding"])
    with pytest.raises(ValueError, match="segment_seconds"):
        registry.get("songsummary", segment_seconds=1.0)
    with pytest.raises(ValueError, match="encoder"):
        registry.get("songsummary", encoder="ncms")


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for index in range(2):
        audio, _ = render_clip(index, seed=3, seconds=CLIP_SECONDS, sample_rate=CLIP_RATE)
        path = folder / f"clip{index}.wav"
        sf.write(path, audio, CLIP_RATE)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_family_through_extract(tmp_path, two_files, name):
    model = build(name)
    representations = ("dlr",) if name == "pooled" else ()
    out = tmp_path / "out"
    segment_seconds = SEGMENT_SECONDS.get(name, 4.0)
    summary = extract(two_files, out=out, model=model, representations=representations,
                      segment_seconds=segment_seconds, workers=0, progress=False)
    assert (summary["ok"], summary["failed"]) == (2, 0), summary["failures"]
    table = pq.read_table(out / "outputs.parquet")
    segments = int(CLIP_SECONDS // segment_seconds)
    assert table.num_rows == 2 * segments
    for key, size in HEADS[name].items():
        head = key[:-len("_logits")]
        columns = [f"{head}_{index}" for index in range(size)]
        assert set(columns) <= set(table.column_names)
        probs = np.stack([table.column(column).to_numpy() for column in columns], axis=1)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    embedding = np.load(out / "embedding" / "clip0.wav.npy")
    assert embedding.shape == (segments, model.embedding_dim)
    if name == "ncms":  # per 5 s NCMS segment: mean and variance of both DNNs' 6 last hidden units
        features = np.load(out / "ncms_features" / "clip0.wav.npy")
        assert features.shape == (segments, 2, 4 * 6) and np.isfinite(features).all()


@pytest.mark.parametrize("name", ["fcn", "crnn"])
def test_load_model_builds_a_registry_name_untrained_with_a_warning(name):
    with pytest.warns(UserWarning, match=f"model '{name}' is a registry name.*untrained"):
        model = registry.load_model(name)
    assert type(model) is registry.MODELS[name][0] and not model.training
    assert model.label_names == {}


def test_load_model_error_lists_the_choices(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        registry.load_model("fnc")
    message = str(error.value)
    assert all(name in message for name in registry.names())
    assert ".safetensors" in message and "model-523" in message
    with pytest.raises(FileNotFoundError, match="nor a TF checkpoint prefix"):
        registry.load_model(tmp_path / "weights.safetensors")
