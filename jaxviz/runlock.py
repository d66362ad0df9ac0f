"""One run per output folder: a lock that a run holds on `out/` for as long as it writes there.

Two `jaxviz attribute` processes on one `--out` would number store chunks from the same counter,
write the same `.npy` names and append the same records twice. `run_lock(out)` takes an exclusive
`flock` on `out/.jaxviz.lock`; a second process is refused at once with the holder's PID. The kernel
drops the lock when its process dies (kill -9 included), so a lock file left behind is no obstacle.

A multi-process run (`process=(i, n)`, n > 1) is the one case where several processes share a folder
by design: each writes its own ledger (`results.p<i>.jsonl`) and chunk prefix (`p<i>-`). Each takes
the folder lock *shared* and its own `out/.jaxviz.p<i>.lock` exclusively: process i twice, or a
single-process run beside them, is refused.

`flock` locks are reliable on local filesystems; on NFS they depend on the server's lock support.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK", "RunLockedError", "run_lock"]

LOCK = ".jaxviz.lock"


class RunLockedError(ValueError):
    """Another process holds the output folder."""


def _holders(out: Path) -> str:
    """`PID 123 on host since 12:00:01` for every lock file in `out` that names a holder."""
    found = []
    for path in sorted(out.glob(".jaxviz*.lock")):
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").strip()
            if text:
                found.append(text)
    return "; ".join(found) or "PID unknown"


def _open_lock(path: Path) -> int:
    if path.is_symlink():
        raise RunLockedError(f"{path} is a symbolic link; a run folder's lock must be a plain file (remove it)")
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


@contextlib.contextmanager
def _flock(path: Path, mode: int, out: Path, write_holder: bool) -> Iterator[None]:
    """Hold `path` locked (`mode`). Each call opens the file anew, so two runs in one process (two
    threads) also exclude each other: `flock` locks belong to the open file, not the process."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockedError(
            f"{out} is in use by another jaxviz run ({_holders(out)}); wait for it to finish, or write to another --out"
        ) from None
    try:
        if write_holder:
            os.ftruncate(fd, 0)
            os.pwrite(
                fd, f"PID {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode(), 0
            )
        yield
    finally:
        if write_holder:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def run_lock(out: str | os.PathLike[str], process: tuple[int, int] = (0, 1)) -> Iterator[None]:
    """Hold `out` for this run (creating the folder); raises `RunLockedError` if another run holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index, count = process
    if count == 1:
        with _flock(out / LOCK, fcntl.LOCK_EX, out, write_holder=True):
            yield
        return
    with (
        _flock(out / LOCK, fcntl.LOCK_SH, out, write_holder=False),
        _flock(out / f".jaxviz.p{index}.lock", fcntl.LOCK_EX, out, write_holder=True),
    ):
        yield
