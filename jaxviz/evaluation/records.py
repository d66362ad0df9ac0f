"""An evaluation run's folder: its file names and its records (one per image, model, size and method).

The runner (`experiment.py`) writes them; the tables (`summary.py`) and the HTML report read them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import ledger

__all__ = ["CONFIG", "EXAMPLES", "MAPS", "RECORDS", "SUMMARY", "read_records", "record_key"]

RECORDS, CONFIG, SUMMARY, EXAMPLES, MAPS = "records.jsonl", "config.json", "summary.json", "examples", "maps"


def record_key(record: dict) -> tuple[str, str, str, str]:
    """What identifies a record: (sample key, model, size, method)."""
    return record["key"], record["model"], str(record["size"]), record["method"]


def read_records(out: str | os.PathLike[str]) -> list[dict]:
    """The records of a run directory, in file order; a torn (non-JSON) line is skipped."""
    return [r for r in ledger.read(Path(out) / RECORDS) if "key" in r]
