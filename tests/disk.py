"""Big test files on disk one at a time."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path


class OneAtATime:
    """Files made on demand, at most one on disk: `get(key)` deletes the previous key's file (or folder)
    before making this one with `make(key)`. A full-size VGG16 file is 528 MB: modules that write one per
    format keep one at a time, and write a file again if another came between."""

    def __init__(self, make: Callable[[str], Path]):
        self.make, self.current = make, {}

    def get(self, key: str) -> Path:
        if key not in self.current:
            for path in self.current.values():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            self.current = {key: self.make(key)}
        return self.current[key]
