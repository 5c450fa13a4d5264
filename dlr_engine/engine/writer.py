"""Outputs on disk: per-track ``.npy`` arrays, a Parquet manifest and a model-outputs table,
written so that a run killed at any moment leaves no partial file and loses no finished track.

Layout under ``out/`` (``<tag>`` is empty, or ``.shard-I-of-N`` for a shard):
  <name>/<id>.npy             one array per track and output name (dlr, mel, embedding, ...)
  manifest<tag>.parquet       one row per track (``MANIFEST_SCHEMA``)
  outputs<tag>.parquet        one row per segment: id, segment, start, class probabilities
  params<tag>.json            the parameters behind each ``params_hash`` of the tables
  .journal<tag>.jsonl         records of finished tracks not yet merged into the tables
  .tmp<tag>/                  arrays being written (cleared when a run starts)
While a run writes, it holds an exclusive ``flock`` on the folder itself (no lock file).

A track's arrays are streamed into ``.tmp`` segment by segment, renamed into place when the
track is done (``os.replace`` is atomic), and only then is its record appended to the
journal. A run folds the journal into the Parquet tables (written to a temporary name, then
renamed) when it starts and when it ends; until then the journal is the record.

A table that cannot be read when a run starts is moved aside (``<name>.damaged``, with a
warning) and rebuilt: tracks whose rows it held are missing from it, so the resume check
(``Store.done``) sends them to be computed again.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import struct
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..io.atomic import write_atomic
from .discover import readable

MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()),            # absolute path of the source file (readable: see
                                      # discover.readable)
    ("path_bytes", pa.binary()),      # its exact bytes when they are not UTF-8, else null
    ("id", pa.string()),              # path relative to the corpus root; names the arrays
    ("size", pa.int64()),             # bytes of the source file
    ("mtime", pa.float64()),          # its modification time (seconds since the epoch)
    ("status", pa.string()),          # ok | failed | skipped
    ("error", pa.string()),           # reason of a failure
    ("warning", pa.string()),         # something the decoder worked around (a bad header)
    ("duration", pa.float64()),       # seconds of audio decoded (null when failed)
    ("sample_rate", pa.int64()),      # native Hz
    ("channels", pa.int64()),         # native channel count
    ("codec", pa.string()),           # container/codec as the decoder names it
    ("segments", pa.int64()),         # rows of the track's arrays (1 in continuous mode)
    ("segment_starts", pa.list_(pa.float64())),  # their start times, seconds
    ("arrays", pa.list_(pa.string())),  # names of the track's arrays (<name>/<id>.npy)
    ("output_rows", pa.int64()),      # its rows in the outputs table
    ("seconds", pa.float64()),        # decode + model time spent on the track
    ("params_hash", pa.string()),     # hash of everything that shapes the outputs
]).with_metadata({b"pandas": json.dumps({
    "index_columns": [], "column_indexes": [],
    "columns": [{"name": name, "field_name": name, "pandas_type": "int64",
                 "numpy_type": "Int64", "metadata": None}
                for name in ("size", "sample_rate", "channels", "segments", "output_rows")],
}).encode()})
"""The manifest's columns. The ``pandas`` metadata makes ``pandas.read_parquet`` give the
integer columns as nullable ``Int64`` (a failed track has no channel count) instead of
float64; pandas reads the other columns by their Arrow types."""
RESUME_COLUMNS = ("id", "size", "mtime", "status", "params_hash", "arrays", "output_rows")
"""Manifest columns the resume check reads."""
STATUSES = ("ok", "failed", "skipped")
NPY_HEADER_BYTES = 128
"""Fixed header size of streamed ``.npy`` files, so the final shape is written in place."""


class NpyStream:
    """A ``.npy`` file written item by item at ``tmp_path``, renamed to ``path`` on commit.

    Items of equal shape are stacked: ``(n, *item_shape)``. With ``concat_frames`` the items
    ``(channels, frames_i)`` are joined along frames into ``(1, channels, sum frames_i)``,
    stored in Fortran order so each item is a contiguous append.
    """

    def __init__(self, tmp_path: str, path: str, dtype: str, concat_frames: bool = False) -> None:
        self.tmp_path, self.path = tmp_path, path
        self.dtype = np.dtype(dtype)
        self.concat_frames = concat_frames
        self.item_shape: tuple[int, ...] | None = None
        self.count = 0
        self._file = open(tmp_path, "wb")
        self._file.write(b"\0" * NPY_HEADER_BYTES)

    def append(self, item: np.ndarray) -> None:
        shape = item.shape[:-1] if self.concat_frames else item.shape
        if self.item_shape is None:
            self.item_shape = shape
        elif shape != self.item_shape:
            raise ValueError(f"{self.path}: item of shape {item.shape} after items of "
                             f"{self.item_shape}")
        data = item.T if self.concat_frames else item
        self._file.write(np.ascontiguousarray(data, self.dtype).data)
        self.count += item.shape[-1] if self.concat_frames else 1

    def _header(self) -> bytes:
        if self.concat_frames:
            shape, fortran = (1, *self.item_shape, self.count), True
        else:
            shape, fortran = (self.count, *self.item_shape), False
        text = f"{{'descr': '{self.dtype.str}', 'fortran_order': {fortran}, 'shape': {shape}, }}"
        body_bytes = NPY_HEADER_BYTES - 10
        if len(text) + 1 > body_bytes:
            raise ValueError(f"npy header for shape {shape} exceeds {NPY_HEADER_BYTES} bytes")
        return (b"\x93NUMPY\x01\x00" + struct.pack("<H", body_bytes)
                + text.ljust(body_bytes - 1).encode("latin1") + b"\n")

    def commit(self) -> None:
        self._file.seek(0)
        self._file.write(self._header())
        self._file.close()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp_path)


def shard_tag(shard: tuple[int, int] | None) -> str:
    return "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"


@dataclass
class TrackRecord:
    """What a finished track adds: its manifest ``row`` and its model-output ``segments``
    rows (dicts of column -> value)."""

    row: dict
    segments: list[dict] = field(default_factory=list)


class Store:
    """The tables of one output folder (and shard): resume lookups, the journal, merging."""

    def __init__(self, out: str | os.PathLike, shard: tuple[int, int] | None = None) -> None:
        self.out = os.fspath(out)
        tag = shard_tag(shard)
        self.manifest_path = os.path.join(self.out, f"manifest{tag}.parquet")
        self.outputs_path = os.path.join(self.out, f"outputs{tag}.parquet")
        self.params_path = os.path.join(self.out, f"params{tag}.json")
        self.journal_path = os.path.join(self.out, f".journal{tag}.jsonl")
        self.tmp_dir = os.path.join(self.out, f".tmp{tag}")
        self._lock: int | None = None
        self._journal = None
        self._names = itertools.count()

    def open(self) -> dict[str, dict]:
        """Lock the folder, clear leftovers of a killed run, merge its journal (a damaged table
        is moved aside first); return the manifest rows by id (``RESUME_COLUMNS``, and
        ``table_rows``: the track's rows found in the outputs table)."""
        os.makedirs(self.out, exist_ok=True)
        self._acquire_lock()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        os.makedirs(self.tmp_dir)
        for path in (self.manifest_path, self.outputs_path):
            _set_aside_if_damaged(path)
        self.merge()
        self._journal = open(self.journal_path, "a", encoding="utf-8")
        if not os.path.exists(self.manifest_path):
            return {}
        names = pq.read_schema(self.manifest_path).names
        columns = [name for name in RESUME_COLUMNS if name in names]
        data = pq.read_table(self.manifest_path, columns=columns).to_pydict()
        rows = {values[0]: dict(zip(columns, values))
                for values in zip(*(data[name] for name in columns))}  # columns[0] is id
        counts = self._output_rows()
        for track_id, row in rows.items():
            row["table_rows"] = counts.get(track_id, 0)
        return rows

    def _output_rows(self) -> dict[str, int]:
        if not os.path.exists(self.outputs_path):
            return {}
        counts = pc.value_counts(pq.read_table(self.outputs_path, columns=["id"])["id"])
        return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))

    def _acquire_lock(self) -> None:
        """flock on the folder itself. Kept over ``filelock``: a lock *file* either stays in the
        folder after the run, or, deleted on release, lets two later runs lock two different
        files of the same name; the folder always exists and is always the same inode."""
        import fcntl
        self._lock = os.open(self.out, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise RuntimeError(f"another dlr-engine run is writing {self.out}; wait "
                               f"for it to finish or choose another --out") from None

    def write_params(self, params_hash: str, params: dict) -> None:
        """Record the parameters behind ``params_hash`` in ``params<tag>.json`` (hash ->
        parameters, every hash the folder's tables hold)."""
        known = {}
        if os.path.exists(self.params_path):
            with contextlib.suppress(ValueError), open(self.params_path) as file:
                known = json.load(file)
        if known.get(params_hash) == params:
            return
        known[params_hash] = params
        text = json.dumps(known, indent=1, sort_keys=True)
        write_atomic(self.params_path, lambda tmp: tmp.write_text(text))

    def array_path(self, name: str, track_id: str) -> str:
        return os.path.join(self.out, name, *track_id.split("/")) + ".npy"

    def remove_arrays(self, track_id: str) -> None:
        """Delete every array of ``track_id`` (a track that now fails keeps no stale ones)."""
        with os.scandir(self.out) as entries:
            names = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.array_path(name, track_id))

    def stream(self, name: str, track_id: str, dtype: str, concat_frames: bool) -> NpyStream:
        tmp = os.path.join(self.tmp_dir, f"{next(self._names)}.npy")
        return NpyStream(tmp, self.array_path(name, track_id), dtype, concat_frames)

    def record(self, record: TrackRecord) -> None:
        """Append a finished track to the journal (after its arrays are in place)."""
        row = dict(record.row)
        if row.get("path_bytes") is not None:
            row["path_bytes"] = row["path_bytes"].hex()   # JSON holds text
        line = json.dumps({"row": row, "segments": record.segments})
        self._journal.write(line + "\n")
        self._journal.flush()

    def _read_journal(self) -> list[TrackRecord]:
        if not os.path.exists(self.journal_path):
            return []
        records = {}
        with open(self.journal_path, encoding="utf-8") as file:
            for line in file:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # the last line of a killed run
                    continue
                row = entry["row"]
                if row.get("path_bytes") is not None:
                    row["path_bytes"] = bytes.fromhex(row["path_bytes"])
                elif readable(row["path"]) != row["path"]:
                    # a journal written before issue 17: a name that is not UTF-8 held
                    # as surrogates, which no Parquet table can take
                    row["path_bytes"] = os.fsencode(row["path"])
                    row["path"] = readable(row["path"])
                row["id"] = readable(row["id"])
                for segment in entry["segments"]:
                    segment["id"] = row["id"]
                records[row["id"]] = TrackRecord(row, entry["segments"])
        return list(records.values())

    def merge(self) -> None:
        """Fold the (closed) journal into the Parquet tables (later records replace earlier
        rows of the same id), write them atomically, then drop the journal."""
        records = self._read_journal()
        if not records:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.journal_path)
            return
        ids = pa.array([record.row["id"] for record in records], pa.string())
        rows = pa.Table.from_pylist([record.row for record in records], schema=MANIFEST_SCHEMA)
        _replace_rows(self.manifest_path, rows, ids, ["path"])
        segments = [segment for record in records for segment in record.segments]
        new_segments = pa.Table.from_pylist(segments) if segments else None
        _replace_rows(self.outputs_path, new_segments, ids, ["id", "segment"])
        os.remove(self.journal_path)

    def close(self) -> None:
        """Merge the journal and release the lock."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self.merge()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def _set_aside_if_damaged(path: str) -> None:
    """Move an unreadable Parquet table to ``<path>.damaged`` with a warning."""
    if not os.path.exists(path):
        return
    try:
        pq.ParquetFile(path).read()
    except (OSError, pa.ArrowException) as error:
        os.replace(path, path + ".damaged")
        warnings.warn(f"{path} is damaged ({error}); moved to {path}.damaged and rebuilt: the "
                      f"tracks whose rows it held are computed again", RuntimeWarning,
                      stacklevel=3)


def _replace_rows(path: str, new: pa.Table | None, ids: pa.Array, sort_keys: list[str]) -> None:
    """Rewrite the table at ``path`` with rows of ``ids`` replaced by ``new``."""
    tables = []
    if os.path.exists(path):
        old = pq.read_table(path)
        tables.append(old.filter(pc.invert(pc.is_in(old["id"], value_set=ids))))
    if new is not None:
        tables.append(new)
    if not tables:
        return
    table = pa.concat_tables(tables, promote_options="default")
    table = table.sort_by([(key, "ascending") for key in sort_keys])
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


class WriterThread:
    """Writes arrays and records off the compute thread.

    ``append(key, name, item)`` streams an item into the track's array ``name``;
    ``commit(key, record)`` puts the track's arrays in place and journals it; ``abort(key,
    record)`` drops its partial arrays and journals the failure. An error in the thread (disk
    full) is raised by the next call.
    """

    def __init__(self, store: Store, dtype: str, concat_frames: bool,
                 max_pending: int = 64) -> None:
        self.store = store
        self.dtype = dtype
        self.concat_frames = concat_frames
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._streams: dict[object, dict[str, NpyStream]] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="dlr-engine-writer")
        self._thread.start()

    def _send(self, command: tuple) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing outputs failed: {self._error}") from self._error
        self._queue.put(command)

    def append(self, key: object, track_id: str, name: str, item: np.ndarray) -> None:
        self._send(("append", key, track_id, name, item))

    def commit(self, key: object, record: TrackRecord) -> None:
        self._send(("commit", key, record))

    def abort(self, key: object, record: TrackRecord) -> None:
        self._send(("abort", key, record))

    def _run(self) -> None:
        while (command := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._handle(*command)
            except BaseException as error:  # noqa: BLE001 - reported to the main thread
                self._error = error

    def _handle(self, kind: str, key: object, *args) -> None:
        if kind == "append":
            track_id, name, item = args
            streams = self._streams.setdefault(key, {})
            if name not in streams:
                streams[name] = self.store.stream(name, track_id, self.dtype, self.concat_frames)
            streams[name].append(item)
            return
        streams = self._streams.pop(key, {})
        (record,) = args
        if kind == "commit":
            for stream in streams.values():
                stream.commit()
        else:
            for stream in streams.values():
                stream.abort()
            self.store.remove_arrays(record.row["id"])
        self.store.record(record)

    def close(self) -> None:
        """Finish pending writes; partial arrays of unfinished tracks are removed."""
        self._queue.put(None)
        self._thread.join()
        for streams in self._streams.values():
            for stream in streams.values():
                stream.abort()
        self._streams.clear()
        if self._error is not None:
            raise RuntimeError(f"writing outputs failed: {self._error}") from self._error

