"""Files written whole or not at all: temp file (or folder) beside the target, then published in one step.

    with atomic_output("out.h5ad", force=False) as tmp:   # tmp: a temp path in the target's folder
        write(tmp)                                       # published on a clean exit; removed on any error
    write_json_atomic("metrics.json", data)
    with atomic_folder("bundle", force=True) as tmp_dir: ...

Publishing without `force` creates the final name exclusively (a hard link, which fails if the name exists), so
a file that appears at the target while the work runs is never overwritten: the check happens at the moment
of publishing, not only before the work. With `force` the target is replaced (`os.replace`, atomic). Temp files
are removed on every exit path, Ctrl-C and SIGTERM included (the CLI turns SIGTERM into an exception, so these
`finally` blocks run). Published files follow the umask, like any file the user creates.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaexprs.errors import InputError, VaexprsRuntimeError


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def to_plain(value: Any) -> Any:
    """`json.dumps(default=...)` hook: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def force_switch() -> str:
    """How the user says --force: under `mlflow run` it is the entry point's force parameter (MLproject sets
    VAEXPRS_FORCE from it)."""
    return "-P force=true" if os.environ.get("MLFLOW_RUN_ID") else "--force"


def exists_error(target: Path) -> InputError:
    return InputError(f"{target} exists; pass {force_switch()} to overwrite it")


def refuse_inputs(target: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str] | None]) -> None:
    """Refuse (InputError, before any work) an output that is one of the command's own inputs: --force replaces
    an earlier output, never the data the command reads (the same file by another name or a hard link too)."""
    target = Path(target)
    if not target.exists():
        return
    for source in inputs:
        if source is not None and Path(source).exists() and os.path.samefile(target, source):
            raise InputError(f"{target} is the input {source}; write the output to another file")


def disk_error(target: Path, exc: OSError) -> VaexprsRuntimeError:
    """A one-line message for a write that failed on the disk (full, read-only, quota)."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return VaexprsRuntimeError(f"could not write {target}: {reason}")


def publish(tmp: Path, target: Path, force: bool, mode: int = 0o666) -> None:
    """Move a finished temp file to `target`: exclusively (never over a file that appeared) unless `force`."""
    os.chmod(tmp, mode & ~umask())
    if force:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails with EEXIST if anything is at `target` now
    except FileExistsError:
        raise exists_error(target) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # no hard links here (some network and FUSE file systems): an exclusive create keeps the name ours
        try:
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode & ~umask())
        except FileExistsError:
            raise exists_error(target) from None
        os.close(fd)
        os.replace(tmp, target)
        return
    os.unlink(tmp)


NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows' NTFS: 255 characters)
TEMP_RESERVE = 24  # a temp name's own bytes: the leading dot, ".tmp-" and tempfile's 8 random characters


def temp_prefix(target: Path, kind: str = "tmp", suffix: str = "") -> str:
    """The prefix of a temp name beside `target`: its name, cut where a long name would make the temp name longer
    than a file name may be (a 245-byte output name is valid, its temp name was not: exit 1, "File name too
    long")."""
    budget = NAME_MAX - TEMP_RESERVE - len(suffix.encode())
    name = target.name.encode()[:budget].decode(errors="ignore")
    return f".{name}.{kind}-"


def check_output_name(path: str | os.PathLike[str]) -> None:
    """Refuse, before any work, an output name longer than a file name may be (found only when publishing)."""
    name = Path(path).name
    if len(name.encode()) > NAME_MAX:
        raise InputError(
            f"output name {name[:40]}... is {len(name.encode())} bytes; a file name has at most {NAME_MAX}"
        )


def temp_path(target: Path, suffix: str = "") -> Path:
    """A new empty temp file beside `target` (same file system, so publishing is a rename)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target, suffix=suffix), suffix=suffix)
    os.close(fd)
    return Path(tmp)


def require_output_folder(folder: Path) -> None:
    """The folder an output goes into must be one we can write in: a missing one, a file of that name and a
    read-only folder are all refused before any work (a training would otherwise be lost at the end)."""
    if not folder.is_dir():
        if folder.exists():
            raise InputError(f"output folder {folder} is a file, not a folder")
        raise InputError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"output folder {folder} is not writable")


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], force: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `target`; publish it on a clean exit, remove it on any exception."""
    target = Path(target)
    require_output_folder(target.parent)
    check_output_name(target)
    if target.exists() and not force:
        raise exists_error(target)
    tmp = temp_path(target, suffix)
    try:
        yield tmp
        publish(tmp, target, force)
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise disk_error(target, exc) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike[str], data: Any, force: bool = True) -> Path:
    """JSON (numpy values allowed, NaN refused) written atomically; readers never see half a file."""
    path = Path(path)
    text = json.dumps(data, indent=2, default=to_plain, allow_nan=False) + "\n"
    with atomic_output(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], force: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `target`; on a clean exit it becomes `target` (replacing it when `force`).

    The caller decides beforehand whether `target` may be replaced (see `vaexprs.bundle.schema.check_bundle_output`);
    the old folder is swapped aside and removed only after the new one is in place.
    """
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), dir=target.parent))
    aside: Path | None = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        if target.exists() or target.is_symlink():
            if not force and not (target.is_dir() and not any(target.iterdir())):
                raise exists_error(target)
            aside = Path(tempfile.mkdtemp(prefix=temp_prefix(target, "old"), dir=target.parent))
            os.replace(target, aside / "old")
        os.rename(tmp, target)
    except BaseException:
        if aside is not None and not target.exists():
            os.replace(aside / "old", target)  # put the previous folder back
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def check_free_space(path: Path, needed: int) -> None:
    """Refuse (InputError, before any work) an output that cannot fit in its folder's free space."""
    import shutil

    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise InputError(
            f"{path.name} needs about {_size(needed)} but {path.parent} has {_size(free)} free; "
            "free some space, write elsewhere, or generate fewer cells"
        )


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class SpaceReserve:
    """Disk blocks claimed (posix_fallocate) ahead of what a library will write into a file.

    `ensure(total)` makes sure the file's first `total` bytes plus a margin are allocated; a disk that cannot
    hold them fails here, as a clean Python error, before the library writes. Where the file system cannot
    preallocate, it does nothing (the up-front free-space check still applies).
    """

    def __init__(self, path: Path, margin: int = 0) -> None:
        self.path = path
        self.margin = margin
        self.reserved = 0
        self._fd: int | None = os.open(path, os.O_RDWR)

    def ensure(self, total: int) -> None:
        want = int(total) + self.margin
        if self._fd is None or want <= self.reserved:
            return
        want = max(want, int(self.reserved * 1.25))  # grow geometrically: few calls for a long run
        try:
            os.posix_fallocate(self._fd, 0, want)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                self.close()  # no preallocation here
                return
            raise
        self.reserved = want

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hdf5_end_of_allocation(path: Path) -> int:
    """Where an HDF5 file's data ends (its superblock's end-of-file address): the size to cut it back to
    after writing into preallocated space."""
    import struct

    with open(path, "rb") as handle:
        head = handle.read(64)
    if head[:8] != b"\x89HDF\r\n\x1a\n":
        raise VaexprsRuntimeError(f"{path} is not an HDF5 file")
    version = head[8]
    if version in (0, 1):
        size, base_at, end_at = head[13], (24 if version == 0 else 28), (40 if version == 0 else 44)
    else:
        size, base_at, end_at = head[9], 12, 28
    fmt = {4: "<I", 8: "<Q"}[size]
    return int(struct.unpack_from(fmt, head, base_at)[0] + struct.unpack_from(fmt, head, end_at)[0])
