"""Append-only JSONL ledgers: one JSON object per line, durable once `append` returns.

A process killed mid-write leaves a torn last line: `read` skips it and `cut_torn_line` removes it
before the next append, so a resumed run neither loses a finished record nor reads a broken one.
The batch runner (`jaxviz attribute`: `results*.jsonl`, `errors*.jsonl`), the map store, the
explorer and the evaluation runner (`records.jsonl`) all read and write their ledgers here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["ERRORS", "ERRORS_GLOB", "RESULTS", "RESULTS_GLOB", "append", "cut_torn_line", "read"]

RESULTS, ERRORS = "results.jsonl", "errors.jsonl"
"""A batch run's ledgers: one line per (image, method) done, one per image (or image and method) that failed."""
RESULTS_GLOB, ERRORS_GLOB = "results*.jsonl", "errors*.jsonl"
"""Every process's ledgers (process i of a multi-process run writes `results.p<i>.jsonl`)."""


def read(path: str | os.PathLike[str]) -> Iterator[dict]:
    """The records of a JSONL file in file order (none if it does not exist); lines that are not JSON
    objects (a torn write) are skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def cut_torn_line(path: str | os.PathLike[str]) -> None:
    """Cut a half-written last line (left by a kill) so appended records start on a new line.

    Reads back from the end in 64 KiB steps: a ledger of millions of lines is not read whole."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos, keep = end, 0
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            i = f.read(step).rfind(b"\n")
            if i >= 0:
                keep = pos - step + i + 1
                break
            pos -= step
        if keep != end:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def append(f, records: Iterable[dict], *, allow_nan: bool = False) -> None:
    """Append `records` to the open text file `f` and make them durable: a kill after this returns
    loses none of these lines.

    `allow_nan=False` (the batch runner's ledgers) refuses NaN and infinities, so that a non-finite
    value can never be recorded as a result; the evaluation runner's metrics may be undefined (NaN)."""
    try:
        lines = "".join(json.dumps(r, allow_nan=allow_nan) + "\n" for r in records)
        if lines:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), f.name) from e
        raise
