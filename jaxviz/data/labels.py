"""Class labels: index ↔ name ↔ WordNet id, with forgiving but never silent name lookup."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import operator
import re
from collections.abc import Sequence

__all__ = ["Labels", "imagenet_labels"]

_WNID = re.compile(r"n\d{8}")


@dataclasses.dataclass(frozen=True)
class Labels:
    """Names of a classifier's classes.

    Attributes:
      synonyms: one tuple of names per class; the first is the display name.
      wnids: WordNet ids per class ("n02268443"), or None for models with their own classes.
    """

    synonyms: tuple[tuple[str, ...], ...]
    wnids: tuple[str, ...] | None = None

    def __post_init__(self):
        if any(not names for names in self.synonyms):
            raise ValueError("every class needs at least one name")
        if self.wnids is not None and len(self.wnids) != len(self.synonyms):
            raise ValueError(f"{len(self.wnids)} wnids for {len(self.synonyms)} classes")

    @classmethod
    def from_names(cls, names: Sequence[str]) -> Labels:
        """Labels with one name per class, e.g. `Labels.from_names(["circle", "square"])`."""
        if isinstance(names, str):
            raise TypeError("from_names expects a sequence of names, not a single string")
        return cls(synonyms=tuple((str(n),) for n in names))

    def __len__(self) -> int:
        return len(self.synonyms)

    @property
    def names(self) -> tuple[str, ...]:
        """Display names of all classes, in index order."""
        return tuple(names[0] for names in self.synonyms)

    def name(self, i: int) -> str:
        """Display name (the first name) of class `i`."""
        return self.synonyms[self._checked(i)][0]

    def wnid(self, i: int) -> str:
        """WordNet id of class `i`; ValueError for labels built from plain names."""
        if self.wnids is None:
            raise ValueError("these labels have no WordNet ids (built from plain names)")
        return self.wnids[self._checked(i)]

    def index(self, query: int | str) -> int:
        """Class index for an int, a digit string ("319"), a wnid, or any of a class's names.

        Names match case-insensitively, with `_` read as a space (Keras writes
        "great_white_shark"). When a name is the display name of exactly one class, that
        class wins even if the name is also another class's synonym, so
        `index(name(i)) == i` whenever `name(i)` is unique.

        Raises:
          ValueError: out-of-range index, unknown wnid, an ambiguous name (the message lists
            each candidate's index and wnid), or an unknown name (with close matches).
        """
        if not isinstance(query, str):
            if isinstance(query, bool):
                raise TypeError("a class index must be an int, not a bool")
            return self._checked(operator.index(query), error=ValueError)
        text = query.strip()
        if text.isdigit():
            return self._checked(int(text), error=ValueError)
        if self.wnids is not None and _WNID.fullmatch(text):
            try:
                return self._by_wnid[text]
            except KeyError:
                raise ValueError(f"wnid {text!r} is not one of these {len(self)} classes") from None
        key = _key(text)
        for table in (self._by_display_name, self._by_any_name):
            matches = table.get(key, ())
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise ValueError(self._ambiguous(query, matches))
        raise ValueError(self._unknown(query))

    @functools.cached_property
    def _by_display_name(self) -> dict[str, tuple[int, ...]]:
        return _group((_key(names[0]), i) for i, names in enumerate(self.synonyms))

    @functools.cached_property
    def _by_any_name(self) -> dict[str, tuple[int, ...]]:
        return _group((_key(n), i) for i, names in enumerate(self.synonyms) for n in names)

    @functools.cached_property
    def _by_wnid(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids or ())}

    def _checked(self, i: int, error: type[Exception] = IndexError) -> int:
        if not 0 <= i < len(self):
            raise error(f"class index {i} out of range for {len(self)} classes")
        return i

    def _describe(self, i: int) -> str:
        wnid = f" {self.wnids[i]}" if self.wnids is not None else ""
        return f"{i}{wnid} ({', '.join(self.synonyms[i])})"

    def _ambiguous(self, query: str, matches: tuple[int, ...]) -> str:
        listed = "; ".join(self._describe(i) for i in matches)
        return f"{query!r} names several classes: {listed}. Pass the index or wnid instead"

    def _unknown(self, query: str) -> str:
        close = difflib.get_close_matches(_key(query), list(self._by_any_name), n=5, cutoff=0.6)
        if not close:
            return f"no class is called {query!r}"
        hints = ", ".join(f"{name!r} ({'/'.join(map(str, self._by_any_name[name]))})" for name in close)
        return f"no class is called {query!r}; did you mean {hints}?"


@functools.cache
def imagenet_labels() -> Labels:
    """The 1000 ImageNet-1k classes in the usual (sorted wnid) order, read once."""
    text = importlib.resources.files("jaxviz.data").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    return _parse_tsv(text)


def _parse_tsv(text: str) -> Labels:
    """Parse `index<TAB>wnid<TAB>name, synonym, ...` lines; `#` lines are comments."""
    wnids, synonyms = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3 or int(fields[0]) != len(wnids):
            raise ValueError(f"imagenet_classes.tsv line {lineno} is malformed: {line!r}")
        wnids.append(fields[1].strip())
        synonyms.append(tuple(n.strip() for n in fields[2].split(",") if n.strip()))
    return Labels(synonyms=tuple(synonyms), wnids=tuple(wnids))


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").casefold().split())


def _group(pairs) -> dict[str, tuple[int, ...]]:
    groups: dict[str, list[int]] = {}
    for key, i in pairs:
        if i not in groups.setdefault(key, []):
            groups[key].append(i)
    return {key: tuple(ids) for key, ids in groups.items()}
