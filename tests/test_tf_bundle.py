"""The pure-Python TF tensor-bundle reader, on the published checkpoint and on small bundles
written here (a minimal LevelDB-table writer, independent of the reader's code)."""
from __future__ import annotations

import shutil
from pathlib import Path

import crc32c
import numpy as np
import pytest
from conftest import REQUIRE_SHARED_ENV, SHARED_ENV, require_shared

from dlr_engine.io import BundleError, ChecksumError, TFBundle, is_optimizer_slot


CHECKPOINT = "model-523"
DATA_SHARD = f"{CHECKPOINT}.data-00000-of-00001"
REFERENCE_FILES = (f"{CHECKPOINT}.index", DATA_SHARD, "tf_reference_synthetic.npz")


def reference_dir() -> Path:
    """``shared/reference/dlr13`` beside the repository (override: DLR_ENGINE_SHARED): the
    published checkpoint and the authors' TF outputs. The test skips without them (fails when
    $DLR_ENGINE_REQUIRE_SHARED is 1, as in CI)."""
    return require_shared("reference/dlr13", REFERENCE_FILES,
                          "the published DLR(13) checkpoint and the authors' TF outputs")


def test_missing_reference_skips_with_the_way_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.setenv(SHARED_ENV, str(tmp_path))
    monkeypatch.delenv(REQUIRE_SHARED_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"model-523.index.* set {SHARED_ENV} to "
                                                     "the folder holding reference/dlr13"):
        reference_dir()
    monkeypatch.setenv(REQUIRE_SHARED_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_SHARED_ENV}=1"):
        reference_dir()
    (tmp_path / "reference" / "dlr13").mkdir(parents=True)
    for name in REFERENCE_FILES:
        (tmp_path / "reference" / "dlr13" / name).touch()
    assert reference_dir() == tmp_path / "reference" / "dlr13"


# ---- a minimal tensor-bundle writer (LevelDB table format) for tests ----

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _masked(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire_type) + payload


def _message(number: int, payload: bytes) -> bytes:
    return _field(number, 2, _varint(len(payload)) + payload)


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 4) -> bytes:
    """A table block with prefix-compressed keys and a restart point every few entries."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        out += key[shared:] + value
        previous = key
    for restart in restarts or [0]:
        out += restart.to_bytes(4, "little")
    return bytes(out + len(restarts or [0]).to_bytes(4, "little"))


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray], compression: int = 0) -> None:
    """Write ``tensors`` (TF dtype codes: float32 1, float64 2, int32 3) as a 1-shard bundle."""
    dtype_codes = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3}
    data, entries = bytearray(), [(b"", _field(1, 0, _varint(1)))]   # header: num_shards = 1
    for name in sorted(tensors):
        raw = np.array(tensors[name], dtype="<" + tensors[name].dtype.str[1:], order="C")
        shape = b"".join(_message(2, _field(1, 0, _varint(d))) for d in raw.shape)
        entry = (_field(1, 0, _varint(dtype_codes[raw.dtype.newbyteorder("=")]))
                 + _message(2, shape) + _field(4, 0, _varint(len(data)))
                 + _field(5, 0, _varint(raw.nbytes))
                 + _field(6, 5, _masked(raw.tobytes()).to_bytes(4, "little")))
        entries.append((name.encode(), entry))
        data += raw.tobytes()
    index = bytearray()

    def add_block(block: bytes) -> bytes:
        handle = _varint(len(index)) + _varint(len(block))
        trailer = bytes([compression]) + _masked(block + bytes([compression])).to_bytes(4, "little")
        index.extend(block + trailer)
        return handle

    data_handle = add_block(_block(entries))
    meta_handle = add_block(_block([]))
    index_handle = add_block(_block([(entries[-1][0], data_handle)]))
    footer = (meta_handle + index_handle).ljust(40, b"\0")
    index.extend(footer + (0xDB4775248B80FB57).to_bytes(8, "little"))
    Path(f"{prefix}.index").write_bytes(bytes(index))
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))


# ---- the published checkpoint ----

def test_published_checkpoint_lists_model_and_optimizer_variables():
    bundle = TFBundle(reference_dir() / CHECKPOINT)
    names = bundle.names()
    assert names == sorted(names)
    assert bundle.shape("DLR/dilated_conv2/weight") == (16, 1, 32)
    assert bundle.shape("DLR_conv/conv2d_1/weight") == (4, 8, 1, 32)
    assert bundle.shape("post/class_fc/weight") == (128, 13)
    assert bundle.dtype("post/bpm_class_fc/bias") == "float32"
    assert {"DLR/dilated_conv0/bias/Adam", "DLR/dilated_conv0/bias/Adam_1",
            "beta1_power", "beta2_power"} <= set(names)
    weights = bundle.read_all()
    assert not any(is_optimizer_slot(name) for name in weights)
    assert set(bundle.read_all(skip_optimizer=False)) == set(names)
    for name, value in weights.items():   # every read passed its crc32c check
        assert value.shape == bundle.shape(name) and value.dtype == np.float32
        assert np.isfinite(value).all()
    assert np.all(weights["DLR_conv/conv2d_1/batch_norm/moving_variance"] > 0)


def test_prefix_may_be_given_as_the_index_or_data_file():
    directory = reference_dir()
    for path in (directory / f"{CHECKPOINT}.index", directory / DATA_SHARD):
        assert TFBundle(path).names() == TFBundle(directory / CHECKPOINT).names()


def _copy_checkpoint(tmp_path: Path) -> Path:
    for name in (f"{CHECKPOINT}.index", DATA_SHARD):
        shutil.copyfile(reference_dir() / name, tmp_path / name)
    return tmp_path / CHECKPOINT


def test_flipped_byte_in_data_shard_raises_crc_error_naming_the_variable(tmp_path):
    prefix = _copy_checkpoint(tmp_path)
    bundle = TFBundle(prefix)
    victim = "DLR_conv/conv2d_3/weight"
    entry = bundle.entry(victim)
    data = bytearray((tmp_path / DATA_SHARD).read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x10
    (tmp_path / DATA_SHARD).write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=f"crc32c mismatch for variable '{victim}'"):
        bundle.read(victim)
    bundle.read("DLR_conv/conv2d_2/weight")   # its neighbours are intact


def test_flipped_byte_in_index_raises_crc_error(tmp_path):
    prefix = _copy_checkpoint(tmp_path)
    index = bytearray((tmp_path / f"{CHECKPOINT}.index").read_bytes())
    index[100] ^= 0x01
    (tmp_path / f"{CHECKPOINT}.index").write_bytes(bytes(index))
    with pytest.raises(ChecksumError, match="index block"):
        TFBundle(prefix)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model-523.index"):
        TFBundle(tmp_path / CHECKPOINT)
    shutil.copyfile(reference_dir() / f"{CHECKPOINT}.index", tmp_path / f"{CHECKPOINT}.index")
    with pytest.raises(FileNotFoundError, match=DATA_SHARD):
        TFBundle(tmp_path / CHECKPOINT)


def test_truncated_data_shard(tmp_path):
    prefix = _copy_checkpoint(tmp_path)
    data = (tmp_path / DATA_SHARD).read_bytes()
    (tmp_path / DATA_SHARD).write_bytes(data[:1000])
    with pytest.raises(BundleError, match="past the end"):
        TFBundle(prefix).read("post/class_fc/weight")


def test_non_bundle_file_is_rejected(tmp_path):
    (tmp_path / "model.index").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BundleError, match="not a TF tensor-bundle index"):
        TFBundle(tmp_path / "model")


# ---- bundles written here ----

def test_round_trip_of_written_bundle(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {f"scope/layer_{i}/kernel": rng.standard_normal((i + 1, 3)).astype(np.float32)
               for i in range(11)}
    tensors["scope/step"] = np.array(523, dtype=np.int32)
    tensors["other/float64"] = rng.standard_normal((2, 2, 2))
    write_bundle(tmp_path / "ckpt", tensors)
    bundle = TFBundle(tmp_path / "ckpt")
    assert bundle.names() == sorted(tensors)
    for name, value in tensors.items():
        assert bundle.shape(name) == value.shape
        assert bundle.dtype(name) == value.dtype.name
        np.testing.assert_array_equal(bundle.read(name), value)


def test_compressed_index_block_is_refused(tmp_path):
    write_bundle(tmp_path / "ckpt", {"w": np.zeros(3, np.float32)}, compression=1)
    with pytest.raises(BundleError, match="snappy"):
        TFBundle(tmp_path / "ckpt")


def test_optimizer_slot_names():
    assert is_optimizer_slot("post/class_fc/weight/Adam_1")
    assert is_optimizer_slot("beta2_power")
    assert not is_optimizer_slot("post/class_fc/weight")
    assert not is_optimizer_slot("Adamant/weight")
