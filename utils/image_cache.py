"""Images decoded once: a memory-mapped uint8 array per list of image files, or the files themselves.

Decoding dominates loading on a CPU (about 0.7 ms per 256x256 JPEG and 1.7 ms per 128x512 PNG), so a
training run pays it every epoch on every image. `CachedImages` pays it once: the images, resized to the
configured size, sit in one file as an N x 3 x H x W uint8 array that every later epoch and run maps into
memory, each DataLoader worker opening it on its first read.

One file holds everything, so a build is made visible by one rename and a killed build leaves nothing
that looks finished:

    b"CVGLIMG1", header length (uint64), JSON header, padding, N CRC-32s (uint32), padding, the pixels

The header is the manifest: the shape, how the images were resized, and each file's path, size in bytes
and modification time (ns). A cache whose manifest no longer matches the files, or whose length is not
the one its header promises, is rebuilt with one line saying why. The first read of an image in a process
checks its CRC-32 (later reads are of the same mapped pages): an image that fails is decoded from its file
instead, and the cache is marked to be rebuilt by the next run, so corrupt bytes never reach the model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from utils.images import ImageReadError, read_rgb, to_chw_tensor

log = logging.getLogger("cvgl")

MAGIC = b"CVGLIMG1"
VERSION = 1
RESIZE = "cv2.imread BGR->RGB, cv2.resize INTER_AREA where the size differs"
ALIGNMENT = 4096
NO_CACHE = "no cache yet"
_LENGTH = struct.Struct("<Q")


class DecodedImages:
    """The images of `paths` as uint8 3 x H x W tensors at `size_hw`, decoded from their files on every read."""

    def __init__(self, paths: Sequence[str], size_hw: tuple[int, int]) -> None:
        self.paths = list(paths)
        self.size_hw = tuple(size_hw)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_chw_tensor(read_rgb(self.paths[index], self.size_hw))


class CachedImages(DecodedImages):
    """The same images as `DecodedImages`, read from the cache file `path`, which is built here when it is missing
    or no longer matches the files (one builder at a time: others wait on a lock, then use its result).

    `workers` threads decode while building (OpenCV releases the GIL). The array is mapped lazily, once per
    process, and never pickled: DataLoader workers map it themselves.
    """

    def __init__(self, paths: Sequence[str], size_hw: tuple[int, int], path: str | os.PathLike,
                 workers: int | None = None, what: str = "images") -> None:
        super().__init__(paths, size_hw)
        self.path = Path(path)
        self.what = what
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._array: np.ndarray | None = None
        self._crcs: np.ndarray | None = None
        self._file_id: tuple[int, int, int] | None = None
        self._verified = np.zeros(len(self), bool)
        self._warned = False
        self._open_or_build()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_array": None}

    def __getitem__(self, index: int) -> torch.Tensor:
        index = range(len(self))[index]
        image = np.array(self._pixels()[index])
        if not self._verified[index]:
            if zlib.crc32(image) != int(self._crcs[index]):
                self._mark_corrupt(index)
                return super().__getitem__(index)
            self._verified[index] = True
        return torch.from_numpy(image)

    def _pixels(self) -> np.ndarray:
        if self._array is None:
            _, crcs, array = _map(self.path, len(self), self.size_hw)
            if _file_id(self.path) != self._file_id:
                raise RuntimeError(f"cache {self.path} was replaced while this run used it; run again to use it")
            self._array, self._crcs = array, crcs
        return self._array

    def _mark_corrupt(self, index: int) -> None:
        """Decode from the file from now on (the caller does), and leave a mark so that the next run rebuilds."""
        with contextlib.suppress(OSError):  # a read-only cache directory: the warning still says it
            _corrupt_mark(self.path).write_text(f"image {index} ({self.paths[index]}) failed its CRC-32\n")
        if not self._warned:
            self._warned = True
            log.warning(f"cache {self.path}: image {index} failed its CRC-32; reading the image files instead, "
                        "the next run rebuilds the cache")

    def _open_or_build(self) -> None:
        manifest = file_manifest(self.paths)
        reason = self._stale_reason(manifest)
        if reason is not None:
            try:
                self._build(manifest)
            except ImageReadError:  # an image's own fault, named as such
                raise
            except OSError as exc:  # a read-only or full cache folder: say so in one line
                raise CacheDirError(f"--cache_dir {self.path.parent}: cannot write the cache of {self.what} there "
                                    f"({exc.strerror or exc}); give a writable folder with room for it, or leave "
                                    "--cache_dir out to decode the images every epoch") from None

    def _build(self, manifest: list[list]) -> None:
        """Build the cache file, once among the processes that share the folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path):
            reason = self._stale_reason(manifest)  # another process may have built it while this one waited
            if reason is not None:
                action = "decoding" if reason == NO_CACHE else "rebuilding it, decoding"
                log.info(f"cache {self.path}: {reason}; {action} {len(self)} {self.what} at "
                         f"{self.size_hw[0]}x{self.size_hw[1]} once")
                start = time.perf_counter()
                build_cache(self.path, self.paths, self.size_hw, manifest, self.workers)
                seconds = time.perf_counter() - start
                log.info(f"cache {self.path}: {len(self)} {self.what} written in {seconds:.0f} s")
                reason = self._stale_reason(manifest)
                if reason is not None:
                    raise RuntimeError(f"cache {self.path} is unusable right after it was built: {reason}")

    def _stale_reason(self, manifest: list[list]) -> str | None:
        """Why the cache file cannot serve these images, or None when it can (and then it is mapped)."""
        if not self.path.exists():
            return NO_CACHE
        mark = _corrupt_mark(self.path)
        if mark.exists():
            return f"an earlier run found a corrupt image ({mark.read_text().strip()})"
        try:
            header, crcs, array = _map(self.path, len(self), self.size_hw)
        except CacheFileError as exc:
            return str(exc)
        difference = manifest_difference(header["files"], manifest)
        if difference is not None:
            return difference
        self._array, self._crcs, self._file_id = array, crcs, _file_id(self.path)
        return None


class CacheDirError(ValueError):
    """The cache folder cannot take a cache that must be built (read-only, full): a user's mistake, in one line."""


class CacheFileError(ValueError):
    """A cache file that is not a complete cache of the expected shape."""


def cache_file_name(label: str, root: str | os.PathLike, size_hw: tuple[int, int]) -> str:
    """`<label>-<H>x<W>-<8 hex of the root's absolute path>.cache`: one file per dataset root, split, view and size."""
    digest = hashlib.sha1(os.path.abspath(os.fspath(root)).encode()).hexdigest()[:8]
    return f"{label}-{size_hw[0]}x{size_hw[1]}-{digest}.cache"


def image_source(paths: Sequence[str], size_hw: tuple[int, int], cache_dir: str | os.PathLike | None, label: str,
                 root: str | os.PathLike, what: str = "images") -> DecodedImages:
    """The images of `paths`: from a cache in `cache_dir` named after `label`, `root` and the size, or decoded."""
    if cache_dir is None:
        return DecodedImages(paths, size_hw)
    return CachedImages(paths, size_hw, Path(cache_dir) / cache_file_name(label, root, size_hw), what=what)


def file_manifest(paths: Sequence[str]) -> list[list]:
    """[absolute path, size in bytes, modification time in ns] per file."""
    rows = []
    for path in paths:
        stat = os.stat(path)
        rows.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    return rows


def manifest_difference(stored: list[list], current: list[list]) -> str | None:
    """What differs between the files a cache was built from and the files now, in words; None when nothing."""
    if len(stored) != len(current):
        return f"built from {len(stored)} images, the dataset now lists {len(current)}"
    changed = [(old, new) for old, new in zip(stored, current, strict=True) if list(old) != list(new)]
    if not changed:
        return None
    old, new = changed[0]
    if old[0] != new[0]:
        what = f"image list differs (first: {old[0]} is now {new[0]})"
    elif old[1] != new[1]:
        what = f"{new[0]} changed size ({old[1]} -> {new[1]} bytes)"
    else:
        what = f"{new[0]} was modified after the cache was built"
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return f"{what}{more}"


def build_cache(path: Path, paths: Sequence[str], size_hw: tuple[int, int], manifest: list[list], workers: int) -> None:
    """Decode every image into a temporary file beside `path`, then rename it into place (atomic on one file system)."""
    for leftover in path.parent.glob(f"{path.name}.tmp-*"):  # from a killed build; the caller holds the lock
        leftover.unlink(missing_ok=True)
    count, (height, width) = len(paths), size_hw
    header = json.dumps({"version": VERSION, "shape": [count, 3, height, width], "resize": RESIZE,
                         "files": manifest}).encode()
    crc_offset, data_offset = _offsets(len(header), count)
    image_bytes = 3 * height * width
    temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as out:
            out.write(MAGIC + _LENGTH.pack(len(header)) + header)
            out.truncate(data_offset + count * image_bytes)
        crcs = _decode_into(temporary, data_offset, paths, size_hw, workers)
        with open(temporary, "r+b") as out:
            out.seek(crc_offset)
            out.write(crcs.tobytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(path.parent)
    _corrupt_mark(path).unlink(missing_ok=True)


def _decode_into(path: Path, offset: int, paths: Sequence[str], size_hw: tuple[int, int], workers: int) -> np.ndarray:
    """Decode the images into the array at `offset` of `path`, in `workers` threads; their CRC-32s."""
    pixels = np.memmap(path, np.uint8, "r+", offset, (len(paths), 3, *size_hw))
    crcs = np.zeros(len(paths), np.uint32)

    def decode(index: int) -> None:
        pixels[index] = read_rgb(paths[index], size_hw).transpose(2, 0, 1)
        crcs[index] = zlib.crc32(pixels[index])

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(decode, range(len(paths))):
            pass
    pixels.flush()
    return crcs


def _map(path: Path, count: int, size_hw: tuple[int, int]) -> tuple[dict, np.ndarray, np.ndarray]:
    """(header, CRC-32s, pixels mapped read-only) of a cache file, after checking its shape and its length."""
    try:
        with open(path, "rb") as cache:
            head = cache.read(len(MAGIC) + _LENGTH.size)
            if len(head) < len(MAGIC) + _LENGTH.size or head[: len(MAGIC)] != MAGIC:
                raise CacheFileError("not a cache file of this version")
            (header_length,) = _LENGTH.unpack(head[len(MAGIC):])
            length = os.fstat(cache.fileno()).st_size
            if header_length > length:
                raise CacheFileError(f"truncated: {length} bytes, its header alone is longer")
            header = json.loads(cache.read(header_length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheFileError(f"unreadable header ({exc})") from None
    shape, stored = [count, 3, *size_hw], header.get("shape")
    if header.get("version") != VERSION or header.get("resize") != RESIZE or not isinstance(stored, list):
        raise CacheFileError(f"written by another version of this cache (version {header.get('version')})")
    if stored[1:] != shape[1:]:
        raise CacheFileError(f"holds {'x'.join(map(str, stored[2:]))} images, expected {size_hw[0]}x{size_hw[1]}")
    if stored[0] != count:
        raise CacheFileError(f"built from {stored[0]} images, the dataset now lists {count}")
    crc_offset, data_offset = _offsets(header_length, count)
    expected = data_offset + count * 3 * size_hw[0] * size_hw[1]
    if length != expected:
        raise CacheFileError(f"truncated or overlong: {length} bytes, its header promises {expected}")
    crcs = np.fromfile(path, np.uint32, count, offset=crc_offset)
    pixels = np.memmap(path, np.uint8, "r", data_offset, tuple(shape)) if count else np.zeros(shape, np.uint8)
    return header, crcs, pixels


def _offsets(header_length: int, count: int) -> tuple[int, int]:
    """Where the CRC-32 table and the pixels start, each on a page boundary after what precedes it."""
    crc_offset = _aligned(len(MAGIC) + _LENGTH.size + header_length)
    return crc_offset, _aligned(crc_offset + 4 * count)


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _file_id(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _corrupt_mark(path: Path) -> Path:
    return path.with_name(f"{path.name}.corrupt")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path.lock`, so that processes sharing a cache directory build each file once."""
    with open(path.with_name(f"{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
