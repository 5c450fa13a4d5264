"""The literature's model families (DESIGN §5): output shapes at the papers' input sizes, a tiny
over-fit run each, constructor options that rebuild the same model, and clear input errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dlr_engine.models import crnn, mcclstm, pons, pooling, samplecnn, songsummary
from dlr_engine.models.crnn import CRNN
from dlr_engine.models.mcclstm import MCCLSTM
from dlr_engine.models.ncms import FeatureDNN
from dlr_engine.models.pons import PonsCNN
from dlr_engine.models.pooling import PooledClassifier
from dlr_engine.models.samplecnn import SampleCNN
from dlr_engine.models.songsummary import SongSummariser

OVERFIT_CLIPS = 16
OVERFIT_STEPS = 60
OVERFIT_RATIO = 0.5


@pytest.fixture(autouse=True)
def single_thread():
    """These models are tiny: on a busy 2-core machine a second intra-op thread only adds
    synchronisation stalls (an MCCLSTM step measured 20x slower with 2 threads than with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


def test_crnn_paper_shape():
    out = _logits(CRNN(), torch.randn(2, crnn.PAPER_MELS, crnn.PAPER_FRAMES))
    assert out.shape == (2, crnn.PAPER_TAGS) and torch.isfinite(out).all()


def test_samplecnn_paper_shape():
    model = SampleCNN()
    assert model.input_samples == 59049
    out = _logits(model, torch.randn(2, model.input_samples))
    assert out.shape == (2, samplecnn.PAPER_TAGS) and torch.isfinite(out).all()


def test_pons_paper_shape():
    out = _logits(PonsCNN(), torch.randn(2, pons.PAPER_MELS, pons.PAPER_FRAMES))
    assert out.shape == (2, pons.PAPER_CLASSES) and torch.isfinite(out).all()


@pytest.mark.parametrize("variant", sorted(mcclstm.VARIANTS))
def test_mcclstm_variants_on_a_track(variant):
    model = MCCLSTM(n_classes=10, variant=variant)
    frames = 5 * mcclstm.CHUNK_FRAMES + 17                  # five chunks and a dropped tail
    out = _logits(model, torch.randn(2, mcclstm.CHUNK_MELS, frames))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert list(model.channels) == list(mcclstm.VARIANTS[variant][0])


def test_mcclstm_chunks_are_consecutive_frames():
    x = torch.arange(2 * 40 * 170, dtype=torch.float32).reshape(2, 40, 170)
    chunks = MCCLSTM().chunks(x)
    assert chunks.shape == (2, 2, 40, 80)
    assert torch.equal(chunks[1, 1], x[1, :, 80:160])


def test_song_summariser_on_embeddings_and_with_an_encoder():
    """Songs of several segments: 128-d embeddings (the DLR source model's width), and log-mel
    segments of 96 bins x 1366 frames (29.1 s) through a CRNN as the encoder."""
    out = _logits(SongSummariser(embedding_dim=128), torch.randn(3, 4, 128))
    assert out.shape == (3, songsummary.DEFAULT_TAGS) and torch.isfinite(out).all()
    encoder = CRNN(n_tags=32)
    model = SongSummariser(embedding_dim=32, n_tags=10, encoder=encoder)
    songs = torch.randn(1, 2, crnn.PAPER_MELS, crnn.PAPER_FRAMES)
    assert _logits(model, songs).shape == (1, 10)
    torch.testing.assert_close(model.embed(songs)[0, 1], encoder(songs[0, 1:2])[0])


@pytest.mark.parametrize("name", pooling.POOLINGS)
def test_pooling_shape_any_length(name):
    model = PooledClassifier(n_features=32, n_classes=7, pooling=name).eval()
    for frames in (1, 13, 200):
        assert _logits(model, torch.randn(3, 32, frames)).shape == (3, 7)


def test_mean_max_attention_pools_ignore_frame_order():
    """Mean, max and attention pooling are invariant to permuting the frames."""
    x = torch.randn(2, 8, 11)
    shuffled = x[:, :, torch.randperm(11)]
    for name in ("mean", "max", "attention"):
        model = PooledClassifier(8, 3, pooling=name).eval()
        torch.testing.assert_close(_logits(model, x), _logits(model, shuffled))


SMALL = {
    "crnn": (lambda: CRNN(n_tags=5, n_mels=16, channels=(8, 8), pools=((2, 2), (2, 2)), gru_units=16),
             (16, 32), "tags", 1e-2),
    "samplecnn": (lambda: SampleCNN(n_tags=5, first_channels=8, block_channels=(8, 8, 8, 8)),
                  (243,), "tags", 1e-2),
    "pons": (lambda: PonsCNN(n_classes=4, n_mels=12, frames=20, filters=4, timbre_bins=8,
                             temporal_frames=6), (12, 20), "classes", 1e-2),
    "mcclstm": (lambda: MCCLSTM(n_classes=4, filters=4, fc_units=32, lstm_units=16),
                (40, 160), "classes", 3e-3),
    "songsummary": (lambda: SongSummariser(embedding_dim=16, n_tags=5, rnn_units=16, mlp_units=32),
                    (6, 16), "tags", 1e-2),
    "ncms-temporal": (lambda: FeatureDNN(108, n_classes=4), (108,), "classes", 1e-2),  # paper's
    "ncms-spectral": (lambda: FeatureDNN(513, n_classes=4), (513,), "classes", 1e-2),  # sizes
    **{f"pooling-{name}": ((lambda name=name: PooledClassifier(32, 4, pooling=name, rnn_units=16)),
                           (32, 10), "classes", 3e-2 if name in ("mean", "max") else 1e-2)
       for name in pooling.POOLINGS},
}
"""name -> (small model, input shape without batch, label kind, Adam learning rate)."""


@pytest.mark.parametrize("name", sorted(SMALL))
def test_overfits_random_labels(name):
    torch.manual_seed(0)
    build, shape, kind, lr = SMALL[name]
    model = build()
    for module in model.modules():       # memorisation test: no dropout noise
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    x = torch.randn(OVERFIT_CLIPS, *shape)
    n_out = model(x[:2]).shape[1]
    if kind == "tags":
        labels = torch.randint(0, 2, (OVERFIT_CLIPS, n_out)).float()
        loss_fn = nn.BCEWithLogitsLoss()
    else:
        labels = torch.randint(0, n_out, (OVERFIT_CLIPS,))
        loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(OVERFIT_STEPS):
        optimizer.zero_grad()
        loss = loss_fn(model(x), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < OVERFIT_RATIO * losses[0], f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize("name", sorted(SMALL))
def test_config_rebuilds_same_architecture(name):
    model = SMALL[name][0]()
    rebuilt = type(model)(**model.config())
    assert {k: v.shape for k, v in model.state_dict().items()} == \
           {k: v.shape for k, v in rebuilt.state_dict().items()}


@pytest.mark.parametrize("model, x, message", [
    (lambda: CRNN(), torch.randn(1, 96, 50), "at least 96"),
    (lambda: CRNN(), torch.randn(1, 128, 1366), "log-mel"),
    (lambda: SampleCNN(), torch.randn(1, 59048), "59049"),
    (lambda: PonsCNN(), torch.randn(1, 40, 80), "patches"),
    (lambda: MCCLSTM(), torch.randn(1, 40, 79), "at least 80"),
    (lambda: PooledClassifier(8, 2), torch.randn(1, 9, 5), "features"),
    (lambda: SongSummariser(16), torch.randn(2, 3, 8), "embedding_dim"),
])
def test_bad_inputs_say_what_to_do(model, x, message):
    with pytest.raises(ValueError, match=message):
        model()(x)


def test_unknown_names_are_listed():
    with pytest.raises(ValueError, match="R0, R1"):
        MCCLSTM(variant="R9")
    with pytest.raises(ValueError, match="mean, max"):
        PooledClassifier(8, 2, pooling="median")
