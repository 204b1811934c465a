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
from collections.abc import Iterator
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


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def exists_error(target: Path) -> InputError:
    return InputError(f"{target} exists; pass --force to overwrite it")


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


def temp_path(target: Path, suffix: str = "") -> Path:
    """A new empty temp file beside `target` (same file system, so publishing is a rename)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.tmp-", suffix=suffix)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str], force: bool = False, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `target`; publish it on a clean exit, remove it on any exception."""
    target = Path(target)
    if target.exists() and not force:
        raise exists_error(target)
    tmp = temp_path(target, suffix)
    try:
        yield tmp
        publish(tmp, target, force)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    aside: Path | None = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~umask())
        if target.exists() or target.is_symlink():
            if not force and not (target.is_dir() and not any(target.iterdir())):
                raise exists_error(target)
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
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
