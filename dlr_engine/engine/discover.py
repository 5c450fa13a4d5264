"""Which files a run covers: globs (``**`` and ``{mp3,flac}`` braces), directories, manifests
and lists of these, turned into one sorted, de-duplicated list; ``shard=(i, n)`` keeps every
n-th file from the i-th, so n independent jobs cover the corpus exactly once.

Each file gets a stable id: its path relative to the **root**, the common directory of the
inputs' fixed parts (a glob's leading directories without wildcards, a directory itself, a
file's parent), so ids do not change when files are added or a shard is picked. Ids and the
tables hold text: a name that is not valid UTF-8 (legal on Linux) appears with its bad bytes
escaped (``caf\\xe9.wav``, see ``readable``); the manifest keeps its exact bytes beside.

Walks cannot hang: directory symlinks are followed at most once per real directory (visited
(device, inode) pairs), so a loop such as ``sub/up -> ..`` adds nothing. A folder that cannot
be listed becomes a failed entry of the corpus (``Corpus.failures``) instead of silently
losing its tracks; FIFOs, sockets and devices with audio names are listed and the decoder
refuses them without opening them.
"""
from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import bracex
from wcmatch import glob as wcglob

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".caf", ".w64", ".rf64", ".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka"})
"""Extensions taken from directories; globs and lists take whatever they name."""
MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".list", ".m3u", ".m3u8", ".csv", ".parquet"})
"""A path with one of these is a list of audio files (one per line; CSV/Parquet column
``path``, else the first column); relative entries are relative to the manifest's folder."""
GLOB_MAGIC = re.compile(r"[*?\[{]")
PROGRESS_DELAY_S = 2.0
"""The discovery counter appears only for walks that take longer (large trees)."""
GLOB_FLAGS = wcglob.BRACE | wcglob.GLOBSTAR
"""Glob syntax of the inputs: ``{a,b}`` braces (nested too) and ``**`` for any depth."""


def readable(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes that are not UTF-8 (held as surrogates by
    ``os.fsdecode``) escaped as ``\\xNN``. ``os.fsencode(path)`` gives the exact bytes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Corpus:
    """Files of one run, sorted by path; ``root`` anchors the ids. ``failures``: entries of
    ``paths`` known to fail before decoding (a folder that cannot be listed), path -> reason."""

    paths: tuple[str, ...]
    root: str
    failures: dict[str, str] = field(default_factory=dict)

    def track_id(self, path: str) -> str:
        """``path`` relative to ``root``, with ``/`` separators (``rock/song.mp3``), readable
        (see ``readable``)."""
        relative = os.path.relpath(path, self.root)
        if relative.startswith(os.pardir):
            relative = os.path.abspath(path).lstrip(os.sep)
        return readable(relative.replace(os.sep, "/"))

    def ids(self) -> list[str]:
        return [self.track_id(path) for path in self.paths]


def _glob_anchor(pattern: str) -> str:
    """The leading directories of ``pattern`` that hold no wildcard."""
    fixed = []
    for part in Path(pattern).parts[:-1]:
        if GLOB_MAGIC.search(part):
            break
        fixed.append(part)
    return os.path.abspath(os.path.join(*fixed)) if fixed else os.getcwd()


def _read_manifest(path: str) -> list[str]:
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        column = "path" if "path" in table.column_names else table.column_names[0]
        entries = [str(value) for value in table.column(column).to_pylist() if value]
    elif suffix == ".csv":
        with open(path, newline="", errors="surrogateescape") as file:
            rows = list(csv.reader(file))
        if not rows:
            return []
        column = rows[0].index("path") if "path" in rows[0] else 0
        body = rows[1:] if "path" in rows[0] else rows
        entries = [row[column] for row in body if len(row) > column and row[column]]
    else:
        with open(path, errors="surrogateescape") as file:
            entries = [line.strip() for line in file]
        entries = [line for line in entries if line and not line.startswith("#")]
    folder = os.path.dirname(os.path.abspath(path))
    return [os.path.normpath(os.path.join(folder, entry)) for entry in entries]


class _Walk:
    """Files under directories; folders that cannot be listed go to ``failures``.
    ``on_folder`` is called after each listed folder (progress)."""

    def __init__(self, on_folder: Callable[[int], None] | None = None) -> None:
        self.failures: dict[str, str] = {}
        self.on_folder = on_folder

    def files(self, top: str) -> list[str]:
        """Every non-directory entry under ``top``, unsorted; directory symlinks are followed,
        each real directory listed once per call."""
        found, stack = [], [top]
        visited: set[tuple[int, int]] = set()
        while stack:
            folder = stack.pop()
            try:
                st = os.stat(folder)
                if (st.st_dev, st.st_ino) in visited:
                    continue
                visited.add((st.st_dev, st.st_ino))
                with os.scandir(folder) as listing:
                    entries = list(listing)
            except OSError as error:
                self.failures[folder] = (f"folder not readable ({error.strerror or error}): "
                                         f"its files are missing from the run")
                continue
            for entry in entries:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                (stack if is_dir else found).append(entry.path)
            if self.on_folder is not None:
                self.on_folder(len(found))
        return found


def _is_audio_name(path: str) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _glob(pattern: str, walk: _Walk) -> list[str]:
    """Matches of ``pattern`` that are not directories. A ``**`` pattern is matched against a
    loop-safe walk of its anchor (``glob`` and ``wcmatch`` follow directory symlinks without
    remembering them, so a loop recurses until the path is too long)."""
    if "**" not in pattern:
        return [match for match in wcglob.glob(pattern, flags=GLOB_FLAGS)
                if not os.path.isdir(match)]
    anchors = {_glob_anchor(expanded) for expanded in bracex.expand(pattern)}
    absolute = os.path.abspath(pattern)
    # an anchor that does not exist matches nothing, as for glob (not an unreadable folder)
    return [path for anchor in sorted(anchors) if os.path.isdir(anchor)
            for path in walk.files(anchor)  # no directories
            if wcglob.globmatch(path, absolute, flags=GLOB_FLAGS)]


def _expand(source: str | os.PathLike, walk: _Walk) -> tuple[list[str], list[str]]:
    """One input -> (files, anchors)."""
    text = os.path.expanduser(os.fspath(source))
    if os.path.isdir(text):
        return [f for f in walk.files(text) if _is_audio_name(f)], [os.path.abspath(text)]
    if os.path.isfile(text) and Path(text).suffix.lower() in MANIFEST_EXTENSIONS:
        files = _read_manifest(text)
        return files, [os.path.dirname(os.path.abspath(f)) for f in files]
    if GLOB_MAGIC.search(text) and not os.path.exists(text):
        return _glob(text, walk), [_glob_anchor(p) for p in bracex.expand(text)]
    # a single file, existing or not: a missing one is recorded as failed, not skipped
    return [text], [os.path.dirname(os.path.abspath(text))]


def _identity(path: str) -> tuple:
    """What makes two paths the same file: (device, inode), else the absolute path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", path)
    if stat.S_ISDIR(st.st_mode):  # a failed folder: by path
        return ("path", path)
    return (st.st_dev, st.st_ino)


def _path_list(paths) -> list:
    """``paths`` as a list of path-likes; audio already in memory (or anything else) is refused."""
    if hasattr(paths, "__array__") or not hasattr(paths, "__iter__"):
        raise TypeError(f"paths must be a glob, a path or a list of them, not "
                        f"{type(paths).__name__}; for audio already in memory call the module "
                        f"directly, e.g. dlr_engine.DLR()(torch.from_numpy(audio))")
    sources = list(paths)
    for source in sources:
        if not isinstance(source, (str, bytes, os.PathLike)):
            raise TypeError(f"paths must hold file names, not {type(source).__name__}")
    return sources


def discover(paths: str | os.PathLike | Iterable[str | os.PathLike],
             shard: tuple[int, int] | None = None, progress: bool = False) -> Corpus:
    """The files named by ``paths`` (a glob, directory, manifest or file, or a list of them),
    sorted by absolute path and de-duplicated (the same file through two names counts once);
    folders that cannot be listed come along as failed entries. Then the ``shard`` (i, n)
    subset. progress: a counter of folders and files while walking (large trees).

    Raises ``FileNotFoundError`` when nothing matches.
    """
    sources = [paths] if isinstance(paths, (str, os.PathLike)) else _path_list(paths)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc="discover", unit="folder", dynamic_ncols=True, delay=PROGRESS_DELAY_S)
    walk = _Walk(on_folder=None if bar is None else
                 lambda files: (bar.update(1), bar.set_postfix(files=files, refresh=False)))
    files, anchors = [], []
    try:
        for source in sources:
            found, anchor = _expand(source, walk)
            files.extend(found)
            anchors.extend(anchor)
    finally:
        if bar is not None:
            bar.close()
    files.extend(walk.failures)
    if not files:
        raise FileNotFoundError(f"no audio files found for {sources!r}: check the glob (quote it "
                                f"so the shell does not expand it) or the directory")
    unique: dict[tuple, str] = {}
    for path in sorted(os.path.abspath(f) for f in files):
        unique.setdefault(_identity(path), path)
    ordered = sorted(unique.values())
    root = os.path.commonpath(anchors) if anchors else os.getcwd()
    if shard is not None:
        index, count = check_shard(shard)
        ordered = ordered[index::count]
    failures = {os.path.abspath(path): reason for path, reason in walk.failures.items()}
    return Corpus(tuple(ordered), root, {p: failures[p] for p in ordered if p in failures})


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = (int(value) for value in shard)
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard must be I/N with 0 <= I < N (0-based), got {index}/{count}")
    return index, count


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``: the third of eight shards (0-based)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"shard must be I/N with 0 <= I < N (e.g. 0/4), got {text!r}")
    return check_shard((int(match[1]), int(match[2])))
