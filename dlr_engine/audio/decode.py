"""Streaming decode: an audio file -> mono float32 blocks at the model rate.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis, Opus and MP3; PyAV, when installed
(``pip install av``), reads what libsndfile cannot (AAC/M4A, WMA, ...). Channels are averaged
(``block @ [1/c] * c``, librosa's ``to_mono``) and resampled with soxr HQ, as
``librosa.load(path, sr=sample_rate)`` does, to the same output length, so features match a
librosa-based workflow. Decoding goes block by block through ``soxr.ResampleStream``: memory
stays bounded however long the file is.

Every failure is a ``DecodeError`` whose message is the reason recorded in the manifest.
"""
from __future__ import annotations

import io
import math
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile
import soxr
from soundfile import _ffi, _snd  # libsndfile's C API, see AudioStream._soundfile_blocks

BLOCK_FRAMES = 65536
"""Native frames read per block (1.5 s at 44.1 kHz; 512 KB as float32 stereo)."""
RESAMPLE_QUALITY = "HQ"
"""soxr quality of ``librosa.load``'s default ``res_type="soxr_hq"``."""
TRUNCATION_TOLERANCE = 0.01
"""Fraction of the declared length a decoder may fall short by (MP3 length estimates)."""
WAV_SIZE_PLACEHOLDERS = (0, 0xFFFFFFFF, 0x7FFFFFFF)
"""Data-chunk sizes that streaming WAV writers leave in place of the real size."""
OGG_MAX_PAGE_BYTES = 27 + 255 + 255 * 255
"""The longest Ogg page: header, 255 lacing values, 255 segments of 255 bytes."""
OGG_END_OF_STREAM = 0x04
"""Header-type flag of the last page of an Ogg logical stream."""


class DecodeError(Exception):
    """A file that cannot be decoded; ``str(error)`` is the reason, without the path."""


@dataclass
class AudioInfo:
    """What the decoder learned about one file.

    sample_rate: native Hz; channels: native channel count; frames: native frames decoded
    (complete once the stream is exhausted); codec: ``"FLAC"``, ``"MP3"``, ``"av:aac"``, ...;
    warning: a defect of the file that the decoder worked around ("" if none).
    """

    sample_rate: int
    channels: int
    frames: int = 0
    codec: str = ""
    warning: str = ""

    @property
    def duration(self) -> float:
        """Seconds of audio decoded so far."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def av_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


NOT_REGULAR = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def _check_readable(path: str) -> None:
    """Raise ``DecodeError`` for a missing, empty, unreadable or not regular path (a FIFO,
    socket or device is never opened: a FIFO nobody writes would block the read forever)."""
    try:
        st = os.stat(path)
        for test, kind in NOT_REGULAR:
            if test(st.st_mode):
                raise DecodeError(f"is {kind}, not an audio file; it was not opened")
        if st.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise DecodeError("file not found") from None
    except PermissionError:
        raise DecodeError("permission denied: the file is not readable") from None
    except OSError as error:
        raise DecodeError(f"cannot open: {error.strerror or error}") from None


def _downmix(block: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 -> (frames,) channel mean."""
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    return block @ np.full(channels, 1.0 / channels, dtype=np.float32)


class AudioStream:
    """Mono float32 blocks of a file at ``sample_rate`` Hz.

    ``with AudioStream(path, 8000) as stream: for block in stream: ...``; ``stream.info`` holds
    the native rate and channels after opening and the decoded length once exhausted.
    Iterating raises ``DecodeError`` for damaged, truncated or non-finite audio.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int,
                 block_frames: int = BLOCK_FRAMES) -> None:
        self.path = os.fspath(path)
        self.sample_rate = int(sample_rate)
        self.block_frames = block_frames
        _check_readable(self.path)
        self._file = None
        try:
            # bytes: soundfile encodes a str strictly, failing names that are not UTF-8
            self._file = soundfile.SoundFile(os.fsencode(self.path))
        except soundfile.LibsndfileError as error:
            self._av_reason = f"libsndfile: {error.error_string}"
            self.info, self._native = self._open_av()
        else:
            self.info = AudioInfo(self._file.samplerate, self._file.channels,
                                  codec=self._file.format)
            if self._file.format == "WAV":
                self._trust_wav_length()
            self._native = self._soundfile_blocks()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._native.close()

    # -- native readers: each yields (frames, channels) float32 blocks ----------------------

    def _soundfile_blocks(self) -> Iterator[np.ndarray]:
        """Blocks through libsndfile's ``sf_readf_float`` directly: ``SoundFile.read`` seeks to
        its own position after every call, and for MP3 that seek makes libmpg123 drop its bit
        reservoir, leaving ~1000 wrong samples after each block boundary (libsndfile 1.2.2)."""
        file = self._file
        while True:
            block = np.empty((self.block_frames, file.channels), np.float32)
            frames = _snd.sf_readf_float(file._file, _ffi.cast("float *", _ffi.from_buffer(block)),
                                         self.block_frames)
            code = _snd.sf_error(file._file)
            if code:
                raise DecodeError(f"decode failed after {self.info.duration:.2f} s: "
                                  f"{soundfile.LibsndfileError(code).error_string}")
            if frames <= 0:
                break
            yield block[:frames]
        self._check_complete(file)

    def _trust_wav_length(self) -> None:
        """A WAV whose data chunk declares fewer bytes than follow it, with no valid chunk
        after the declared end (a writer that never went back to fix the size: 0, or the
        size of its first buffer): libsndfile would stop at the declared size, so the
        audio up to the end of the file is read instead (RAW, same encoding) and the row
        says so in ``info.warning``."""
        layout = _wav_data_chunk(self.path)
        if layout is None:
            return
        offset, declared, available = layout
        frame_bytes = self._file.channels * _SAMPLE_BYTES.get(self._file.subtype, 0)
        if not frame_bytes or declared >= available or _valid_chunk_at(
                self.path, offset + declared + declared % 2, offset + available):
            return
        region = _Region(self.path, offset, available - available % frame_bytes)
        raw = soundfile.SoundFile(region, format="RAW", subtype=self._file.subtype,
                                  channels=self._file.channels,
                                  samplerate=self._file.samplerate, endian="LITTLE")
        self._file.close()
        self._file = raw
        self.info.warning = (f"the WAV data chunk declares {declared} bytes but {available} "
                             f"follow it: read them all")

    def _check_complete(self, file: soundfile.SoundFile) -> None:
        """Truncation: fewer frames than the header declares, a WAV data chunk that declares
        more bytes than the file holds (libsndfile then reports the short length), or an Ogg
        stream whose last page is cut or lacks the end-of-stream flag (libsndfile takes the
        length of an Ogg file from its last page, so a cut file looks complete)."""
        if file.format == "OGG":
            _check_ogg_end(self.path)
        declared, decoded = file.frames, self.info.frames
        if 0 < declared and decoded < declared * (1 - TRUNCATION_TOLERANCE):
            raise DecodeError(f"truncated: decoded {decoded / file.samplerate:.2f} s of the "
                              f"{declared / file.samplerate:.2f} s the header declares")
        match = re.search(r"^data : (\d+) \(should be (\d+)\)", file.extra_info, re.MULTILINE)
        if match:
            declared_bytes, present_bytes = int(match[1]), int(match[2])
            if present_bytes < declared_bytes and declared_bytes not in WAV_SIZE_PLACEHOLDERS:
                raise DecodeError(f"truncated: the data chunk declares {declared_bytes} bytes "
                                  f"but the file holds {present_bytes}")

    def _open_av(self) -> tuple[AudioInfo, Iterator[np.ndarray]]:
        if not av_available():
            raise DecodeError(f"not a readable audio file ({self._av_reason}); if it is "
                              f"AAC/M4A or another FFmpeg format, install PyAV: pip install av")
        import av
        try:
            container = av.open(self.path)
            if not container.streams.audio:
                container.close()
                raise DecodeError(f"no audio stream ({self._av_reason}; PyAV found none)")
            codec = container.streams.audio[0].codec_context
            channels = codec.layout.nb_channels if codec.layout else 0
            info = AudioInfo(codec.sample_rate, channels, codec=f"av:{codec.name}")
        except av.error.FFmpegError as error:
            raise DecodeError(f"not a readable audio file ({self._av_reason}; "
                              f"PyAV: {error})") from None
        if not info.sample_rate or not info.channels:
            container.close()
            raise DecodeError("PyAV reports no sample rate or channel count")
        return info, self._av_blocks(container)

    def _av_blocks(self, container) -> Iterator[np.ndarray]:
        import av
        planar = av.AudioResampler(format="fltp")
        try:
            stream = container.streams.audio[0]
            for frame in container.decode(stream):
                for out in planar.resample(frame):
                    yield out.to_ndarray().T          # (channels, n) -> (n, channels)
            for out in planar.resample(None):
                yield out.to_ndarray().T
        except av.error.FFmpegError as error:
            raise DecodeError(f"decode failed after {self.info.duration:.2f} s: "
                              f"PyAV: {error}") from None
        finally:
            container.close()

    # -- mono, finite, resampled --------------------------------------------------------------

    def __iter__(self) -> Iterator[np.ndarray]:
        """Mono float32 blocks at ``sample_rate``; the total length is librosa's
        ``ceil(native_frames * sample_rate / native_rate)``."""
        native_rate = self.info.sample_rate
        resampler = None
        if native_rate != self.sample_rate:
            resampler = soxr.ResampleStream(native_rate, self.sample_rate, 1,
                                            dtype="float32", quality=RESAMPLE_QUALITY)
        produced = 0
        for block in self._native:
            mono = _downmix(block)
            if not np.isfinite(mono).all():
                bad = int(np.argmin(np.isfinite(mono)))
                seconds = (self.info.frames + bad) / native_rate
                raise DecodeError(f"NaN or Inf samples at {seconds:.2f} s; the file is damaged "
                                  f"or holds invalid floating-point data")
            self.info.frames += len(mono)
            out = resampler.resample_chunk(mono) if resampler is not None else mono
            produced += len(out)
            if len(out):
                yield out
        if not self.info.frames:
            raise DecodeError("no audio samples (the file holds a header only)")
        if resampler is None:
            return
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        expected = int(math.ceil(self.info.frames * (float(self.sample_rate) / native_rate)))
        missing = expected - produced - len(tail)
        if missing > 0:
            tail = np.concatenate([tail, np.zeros(missing, np.float32)])
        elif missing < 0:
            tail = tail[:max(0, len(tail) + missing)]
        if len(tail):
            yield tail


_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                 "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1}
"""Bytes per sample of the WAV encodings read as RAW by ``_trust_wav_length``."""


def _wav_data_chunk(path: str) -> tuple[int, int, int] | None:
    """(offset of the audio, bytes the data chunk declares, bytes after the offset) of a RIFF
    WAV file, or None if its chunks do not lead to a data chunk."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        if file.read(12)[8:] != b"WAVE":
            return None
        position = 12
        while position + 8 <= size:
            file.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
            if chunk_id == b"data":
                return position + 8, chunk_size, size - position - 8
            position += 8 + chunk_size + chunk_size % 2
    return None


def _valid_chunk_at(path: str, position: int, end: int) -> bool:
    """Whether a RIFF chunk (printable id, size within the file) starts at ``position``; also
    true at the end of the file."""
    if position + 8 > end:
        return position >= end
    with open(path, "rb") as file:
        file.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", file.read(8))
    return all(32 <= byte < 127 for byte in chunk_id) and position + 8 + chunk_size <= end


class _Region(io.RawIOBase):
    """Bytes ``[offset, offset + length)`` of a file as a file of their own (for libsndfile's
    virtual I/O)."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        self._file = open(path, "rb")
        self._offset, self._length = offset, length
        self._file.seek(offset)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell() - self._offset

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._length}[whence]
        self._file.seek(self._offset + min(max(base + position, 0), self._length))
        return self.tell()

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)[:max(0, self._length - self.tell())]
        return self._file.readinto(view)

    def close(self) -> None:
        self._file.close()
        super().close()


def _check_ogg_end(path: str) -> None:
    """Raise ``DecodeError`` unless the file ends with a complete Ogg page flagged
    end-of-stream."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        file.seek(max(0, size - OGG_MAX_PAGE_BYTES))
        tail = file.read()
    base = size - len(tail)
    start = tail.rfind(b"OggS")
    while start >= 0:
        header = tail[start:start + 27]
        if len(header) == 27:
            segments = header[26]
            lacing = tail[start + 27:start + 27 + segments]
            if len(lacing) == segments and base + start + 27 + segments + sum(lacing) == size:
                if header[5] & OGG_END_OF_STREAM:
                    return
                raise DecodeError(f"truncated: the Ogg stream's last page (at byte "
                                  f"{base + start}) is not its end-of-stream page")
        start = tail.rfind(b"OggS", 0, start)
    raise DecodeError("truncated: the file ends inside an Ogg page")


def load(path: str | os.PathLike, sample_rate: int) -> tuple[np.ndarray, AudioInfo]:
    """Whole file as mono float32 at ``sample_rate`` (for short files and tests):
    ``(samples,)`` and its ``AudioInfo``."""
    with AudioStream(path, sample_rate) as stream:
        blocks = list(stream)
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return audio, stream.info
