"""Which files a run covers: globs (``**`` and ``{mp3,flac}`` braces), directories, manifests
and lists of these, turned into one sorted, de-duplicated list; ``shard=(i, n)`` keeps every
n-th file from the i-th, so n independent jobs cover the corpus exactly once.

Each file gets a stable id: its path relative to the **root**, the common directory of the
inputs' fixed parts (a glob's leading directories without wildcards, a directory itself, a
file's parent), so ids do not change when files are added or a shard is picked.
"""
from __future__ import annotations

import csv
import glob
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".au",
    ".caf", ".w64", ".rf64", ".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka"})
"""Extensions taken from directories; globs and lists take whatever they name."""
MANIFEST_EXTENSIONS = frozenset({".txt", ".lst", ".list", ".m3u", ".m3u8", ".csv", ".parquet"})
"""A path with one of these is a list of audio files (one per line; CSV/Parquet column
``path``, else the first column); relative entries are relative to the manifest's folder."""
GLOB_MAGIC = re.compile(r"[*?\[{]")


@dataclass(frozen=True)
class Corpus:
    """Files of one run, sorted by path; ``root`` anchors the ids."""

    paths: tuple[str, ...]
    root: str

    def track_id(self, path: str) -> str:
        """``path`` relative to ``root``, with ``/`` separators (``rock/song.mp3``)."""
        relative = os.path.relpath(path, self.root)
        if relative.startswith(os.pardir):
            relative = os.path.abspath(path).lstrip(os.sep)
        return relative.replace(os.sep, "/")

    def ids(self) -> list[str]:
        return [self.track_id(path) for path in self.paths]


def expand_braces(pattern: str) -> list[str]:
    """``"a/*.{mp3,flac}"`` -> ``["a/*.mp3", "a/*.flac"]``; nested and repeated groups expand
    in order; a ``{`` without a matching ``}`` or comma stays literal."""
    depth, start = 0, -1
    for i, char in enumerate(pattern):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                options = _split_top_level(pattern[start + 1:i])
                if len(options) < 2:
                    continue
                head, tail = pattern[:start], pattern[i + 1:]
                return [expanded for option in options
                        for expanded in expand_braces(head + option + tail)]
    return [pattern]


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside nested braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += (char == "{") - (char == "}")
        current.append(char)
    parts.append("".join(current))
    return parts


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
        with open(path, newline="") as file:
            rows = list(csv.reader(file))
        if not rows:
            return []
        column = rows[0].index("path") if "path" in rows[0] else 0
        body = rows[1:] if "path" in rows[0] else rows
        entries = [row[column] for row in body if len(row) > column and row[column]]
    else:
        with open(path) as file:
            entries = [line.strip() for line in file]
        entries = [line for line in entries if line and not line.startswith("#")]
    folder = os.path.dirname(os.path.abspath(path))
    return [os.path.normpath(os.path.join(folder, entry)) for entry in entries]


def _walk(directory: str) -> list[str]:
    found = []
    for folder, _, files in os.walk(directory, followlinks=True):
        found.extend(os.path.join(folder, name) for name in files
                     if Path(name).suffix.lower() in AUDIO_EXTENSIONS)
    return found


def _expand(source: str | os.PathLike) -> tuple[list[str], list[str]]:
    """One input -> (files, anchors)."""
    text = os.path.expanduser(os.fspath(source))
    if os.path.isdir(text):
        return _walk(text), [os.path.abspath(text)]
    if os.path.isfile(text) and Path(text).suffix.lower() in MANIFEST_EXTENSIONS:
        files = _read_manifest(text)
        return files, [os.path.dirname(os.path.abspath(f)) for f in files]
    if GLOB_MAGIC.search(text) and not os.path.exists(text):
        files = [match for pattern in expand_braces(text)
                 for match in glob.glob(pattern, recursive=True) if os.path.isfile(match)]
        return files, [_glob_anchor(pattern) for pattern in expand_braces(text)]
    # a single file, existing or not: a missing one is recorded as failed, not skipped
    return [text], [os.path.dirname(os.path.abspath(text))]


def discover(paths: str | os.PathLike | Iterable[str | os.PathLike],
             shard: tuple[int, int] | None = None) -> Corpus:
    """The files named by ``paths`` (a glob, directory, manifest or file, or a list of them),
    sorted by absolute path and de-duplicated by real path; then the ``shard`` (i, n) subset.

    Raises ``FileNotFoundError`` when nothing matches.
    """
    sources = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files, anchors = [], []
    for source in sources:
        found, anchor = _expand(source)
        files.extend(found)
        anchors.extend(anchor)
    if not files:
        raise FileNotFoundError(f"no audio files found for {sources!r}: check the glob (quote it "
                                f"so the shell does not expand it) or the directory")
    unique: dict[str, str] = {}
    for path in sorted(os.path.abspath(f) for f in files):
        unique.setdefault(os.path.realpath(path), path)
    ordered = sorted(unique.values())
    root = os.path.commonpath(anchors) if anchors else os.getcwd()
    if shard is not None:
        index, count = check_shard(shard)
        ordered = ordered[index::count]
    return Corpus(tuple(ordered), root)


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
