"""Read TensorFlow "tensor bundle" checkpoints (``PREFIX.index`` + ``PREFIX.data-*``) in pure
Python: no TensorFlow, no generated protobuf code.

Format (tensorflow/core/util/tensor_bundle):
- ``PREFIX.index`` is a LevelDB-format table: data blocks of sorted ``key -> value`` entries
  (keys prefix-compressed against the previous key, restart points at the end of each block),
  an index block mapping the last key of each data block to its ``BlockHandle``, and a 48-byte
  footer (two handles as varints, zero padding, magic ``0xdb4775248b80fb57``). Every block is
  followed by a 5-byte trailer: compression type (0 = none) and the masked crc32c of the block
  and the type byte.
- The value of the empty key is a ``BundleHeaderProto`` (num_shards = 1, endianness = 2);
  every other value is a ``BundleEntryProto`` (dtype = 1, shape = 2, shard_id = 3,
  offset = 4, size = 5, crc32c = 6 (fixed32), slices = 7).
- ``PREFIX.data-SSSSS-of-NNNNN`` holds the raw tensor bytes at ``offset`` (``size`` bytes);
  the entry's crc32c is the masked crc32c of those bytes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import crc32c as _crc32c
import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5
CRC_MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto -> numpy (numeric types only).
TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32), 2: np.dtype(np.float64), 3: np.dtype(np.int32),
    4: np.dtype(np.uint8), 5: np.dtype(np.int16), 6: np.dtype(np.int8),
    8: np.dtype(np.complex64), 9: np.dtype(np.int64), 10: np.dtype(np.bool_),
    17: np.dtype(np.uint16), 18: np.dtype(np.complex128), 19: np.dtype(np.float16),
    22: np.dtype(np.uint32), 23: np.dtype(np.uint64),
}
TF_DTYPE_NAMES = {code: dtype.name for code, dtype in TF_DTYPES.items()} | {7: "string",
                                                                           14: "bfloat16"}

OPTIMIZER_SLOT = re.compile(
    r"(^|/)(beta1_power|beta2_power)(_\d+)?$"
    r"|/(Adam|Adam_1|Momentum|RMSProp|RMSProp_1|Adagrad|Adadelta|Adadelta_1|Ftrl|Ftrl_1)$")
"""Names of optimizer state in TF1 checkpoints (slots ``var/Adam`` etc.), not model weights."""


class BundleError(ValueError):
    """The files are not a readable TF tensor bundle (missing, corrupt or unsupported)."""


class ChecksumError(BundleError):
    """A tensor's bytes do not match the crc32c stored in the index."""


def masked_crc32c(data: bytes | memoryview) -> int:
    """TF/LevelDB's masked crc32c: ``rotr(crc, 15) + 0xa282ead8`` (mod 2**32)."""
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + CRC_MASK_DELTA) & 0xFFFFFFFF


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, next_pos)``."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise BundleError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode protobuf wire format into ``(field_number, value)`` pairs: varints and fixed
    ints as int, length-delimited fields as bytes."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
        elif wire_type == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + length]), pos + length
        elif wire_type == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire_type}")
        if pos > len(buf):
            raise BundleError("truncated protobuf message")
        fields.append((number, value))
    return fields


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's location: ``size`` bytes at ``offset`` in data shard ``shard_id``."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    sliced: bool

    @classmethod
    def parse(cls, buf: bytes) -> BundleEntry:
        values: dict[str, int] = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0, "crc32c": 0}
        names = {1: "dtype", 3: "shard_id", 4: "offset", 5: "size", 6: "crc32c"}
        shape: tuple[int, ...] = ()
        sliced = False
        for number, value in _proto_fields(buf):
            if number in names:
                values[names[number]] = value
            elif number == 2:
                shape = _parse_shape(value)
            elif number == 7:
                sliced = True
        return cls(shape=shape, sliced=sliced, **values)


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}; unknown_rank = 3."""
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:
            size = dict(_proto_fields(value)).get(1, 0)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)  # int64 two's complement
        elif number == 3 and value:
            raise BundleError("tensor of unknown rank in bundle")
    return tuple(dims)


def _read_block(index: bytes, offset: int, size: int, path: Path) -> memoryview:
    """Contents of the table block at ``offset`` after checking its trailer."""
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(index):
        raise BundleError(f"{path}: block at {offset} runs past the end of the file")
    compression = index[end]
    if compression != 0:
        kind = "snappy" if compression == 1 else f"type {compression}"
        raise BundleError(f"{path}: index block at {offset} is {kind}-compressed, which this "
                          "reader does not support; re-save the checkpoint without compression")
    stored = int.from_bytes(index[end + 1:end + 5], "little")
    if masked_crc32c(index[offset:end + 1]) != stored:
        raise ChecksumError(f"{path}: crc32c mismatch in index block at offset {offset}; "
                            "the index file is corrupt")
    return memoryview(index)[offset:end]


def _block_entries(block: memoryview) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of one block (keys decompressed)."""
    if len(block) < 4:
        raise BundleError("table block too short")
    num_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 * (num_restarts + 1)
    if limit < 0:
        raise BundleError("table block restart array is larger than the block")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_length > limit:
            raise BundleError("corrupt table block entry")
        key = key[:shared] + bytes(block[pos:pos + non_shared])
        pos += non_shared
        entries.append((key, bytes(block[pos:pos + value_length])))
        pos += value_length
    return entries


def _read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` pairs of a LevelDB-format table file, in key order."""
    index = path.read_bytes()
    if len(index) < FOOTER_BYTES or int.from_bytes(index[-8:], "little") != TABLE_MAGIC:
        raise BundleError(f"{path} is not a TF tensor-bundle index (no LevelDB table magic "
                          "at its end); pass the checkpoint prefix, e.g. 'model-523'")
    footer = index[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0)                # metaindex handle: offset, size (unused)
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(_read_block(index, index_offset, index_size, path)):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        entries.extend(_block_entries(_read_block(index, offset, size, path)))
    return entries


class TFBundle:
    """A TF tensor-bundle checkpoint, e.g. ``TFBundle("reference/dlr13/model-523")``.

    ``names()`` lists the variables, ``shape(name)`` / ``dtype(name)`` describe them and
    ``read(name)`` returns the tensor as a numpy array after checking its crc32c.
    """

    def __init__(self, prefix: str | Path) -> None:
        prefix = Path(prefix)
        if prefix.suffix == ".index" or re.fullmatch(r"\.data-\d{5}-of-\d{5}", prefix.suffix):
            prefix = prefix.with_suffix("")
        self.prefix = prefix
        index_path = prefix.with_name(prefix.name + ".index")
        if not index_path.is_file():
            raise FileNotFoundError(f"checkpoint index {index_path} not found; pass the "
                                    "checkpoint prefix (the path without '.index')")
        table = dict(_read_table(index_path))
        if b"" not in table:
            raise BundleError(f"{index_path} is a LevelDB table but not a TF tensor bundle "
                              "(no BundleHeaderProto under the empty key)")
        header = dict(_proto_fields(table.pop(b"")))
        self.num_shards = header.get(1, 0)
        self.big_endian = header.get(2, 0) == 1
        self._entries = {key.decode("utf-8"): BundleEntry.parse(value)
                         for key, value in table.items()}
        missing = [str(self.shard_path(i)) for i in range(self.num_shards)
                   if not self.shard_path(i).is_file()]
        if missing:
            raise FileNotFoundError(f"checkpoint data shard(s) not found: {', '.join(missing)}; "
                                    f"copy them next to {index_path}")

    def shard_path(self, shard_id: int) -> Path:
        return self.prefix.with_name(
            f"{self.prefix.name}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def names(self) -> list[str]:
        """Variable names in the checkpoint, sorted."""
        return list(self._entries)

    def entry(self, name: str) -> BundleEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"variable {name!r} not in checkpoint {self.prefix}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entry(name).shape

    def dtype(self, name: str) -> str:
        """The TF dtype's name, e.g. ``"float32"``."""
        code = self.entry(name).dtype
        return TF_DTYPE_NAMES.get(code, f"dtype#{code}")

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a new native-endian numpy array of ``shape(name)``."""
        entry = self.entry(name)
        if entry.sliced:
            raise BundleError(f"variable {name!r} is stored as partitioned slices, "
                              "which this reader does not support")
        if entry.dtype not in TF_DTYPES:
            raise BundleError(f"variable {name!r} has dtype {self.dtype(name)}, "
                              "which this reader does not support")
        dtype = TF_DTYPES[entry.dtype].newbyteorder(">" if self.big_endian else "<")
        expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected:
            raise BundleError(f"variable {name!r}: {entry.size} bytes stored for shape "
                              f"{entry.shape} {self.dtype(name)} ({expected} bytes expected)")
        if not 0 <= entry.shard_id < self.num_shards:
            raise BundleError(f"variable {name!r} refers to data shard {entry.shard_id} of "
                              f"{self.num_shards}; the index {self.prefix}.index is corrupt")
        path = self.shard_path(entry.shard_id)
        with path.open("rb") as file:
            file.seek(entry.offset)
            data = file.read(entry.size)
        if len(data) != entry.size:
            raise BundleError(f"variable {name!r} lies past the end of {path} (truncated file?)")
        if masked_crc32c(data) != entry.crc32c:
            raise ChecksumError(f"crc32c mismatch for variable {name!r} in {path}: "
                                "the checkpoint is corrupt")
        array = np.frombuffer(data, dtype=dtype).reshape(entry.shape)
        return array.astype(dtype.newbyteorder("="))

    def read_all(self, skip_optimizer: bool = True) -> dict[str, np.ndarray]:
        """Every variable by name; optimizer state (``*/Adam``, ``beta1_power``...) is left out
        unless ``skip_optimizer`` is False."""
        return {name: self.read(name) for name in self._entries
                if not (skip_optimizer and is_optimizer_slot(name))}

    def __repr__(self) -> str:
        return f"TFBundle({str(self.prefix)!r}, {len(self._entries)} variables)"


def is_optimizer_slot(name: str) -> bool:
    """True for optimizer state such as ``conv/weight/Adam_1`` or ``beta1_power``."""
    return OPTIMIZER_SLOT.search(name) is not None
