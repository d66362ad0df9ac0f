"""Composites: which rule goes where — by kind of operation, layer path, position or predicate.

    guided = composite({"relu": guided_relu})                       # every ReLU
    seed000 = composite({Path("features", "relu"): guided_relu})    # ReLUs under `features` only
    mixed = composite({First("relu"): backprop_relu, "relu": guided_relu})
    custom = composite({Where(lambda s: s.path.startswith("layer4")): my_rule})

A `Site` is one matched operation of the traced program: its kind ("relu", "conv", "dense",
"pool", "max_pool", "add"), the module path it runs in (`layer4.2`; "" outside any module), and its
position among the operations of that kind (0 = the first). The first matcher that accepts a site
gives its rule; unmatched sites keep the model's own VJP. Composites chain with `+` (the left one
wins). Everything here is a frozen value, so equal composites share one compilation.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class Site(NamedTuple):
    """One operation a rule may replace. `layer` numbers the linear layers (conv and dense together)
    in program order; -1 for other kinds."""

    kind: str
    path: str
    index: int
    primitive: str
    layer: int = -1


@dataclass(frozen=True)
class Kind:
    """Every site of one kind ("relu", "conv", "dense", "pool", "max_pool", "add")."""

    kind: str

    def __call__(self, site: Site) -> bool:
        return site.kind == self.kind


@dataclass(frozen=True)
class Path:
    """Sites inside module `path` (itself or below it; `fnmatch` wildcards allowed), of `kind` if given."""

    path: str
    kind: str | None = None

    def __call__(self, site: Site) -> bool:
        if self.kind is not None and site.kind != self.kind:
            return False
        p = site.path
        return p == self.path or p.startswith(self.path + ".") or fnmatch.fnmatchcase(p, self.path)


@dataclass(frozen=True)
class First:
    """The `n`-th site of a kind in program order (0 = the first; negative counts from the end is not
    supported because rules are placed while the program is traced)."""

    kind: str
    n: int = 0

    def __call__(self, site: Site) -> bool:
        return site.kind == self.kind and site.index == self.n


@dataclass(frozen=True)
class FirstLayer:
    """The `n`-th linear layer (conv or dense, counted together) in program order — zennit's "first
    layer" — or, with `kind`, the `n`-th of that kind."""

    n: int = 0
    kind: str | None = None

    def __call__(self, site: Site) -> bool:
        if self.kind is not None:
            return site.kind == self.kind and site.index == self.n
        return site.layer == self.n


@dataclass(frozen=True)
class Where:
    """Sites for which `predicate(site)` is true (`kind` narrows it first, if given)."""

    predicate: Callable[[Site], bool]
    kind: str | None = None

    def __call__(self, site: Site) -> bool:
        return (self.kind is None or site.kind == self.kind) and bool(self.predicate(site))


@dataclass(frozen=True)
class Composite:
    """Ordered `(matcher, rule)` pairs; the first matcher accepting a site gives its rule."""

    pairs: tuple[tuple[Any, Any], ...]
    name: str = ""

    def rule_for(self, site: Site):
        for match, rule in self.pairs:
            if site.kind in rule.kinds and match(site):
                return rule
        return None

    @property
    def kinds(self) -> frozenset[str]:
        """Site kinds some rule here may apply to (the transformation looks only for those)."""
        return frozenset(k for _, rule in self.pairs for k in rule.kinds)

    def __add__(self, other) -> Composite:
        other = as_composite(other)
        return Composite(self.pairs + other.pairs, self.name or other.name)


def _matcher(key) -> Callable[[Site], bool]:
    if isinstance(key, str):
        return Kind(key)
    if callable(key):
        return key if isinstance(key, Kind | Path | First | FirstLayer | Where) else Where(key)
    raise TypeError(f"a composite key is a kind name, Path, First, Where or a predicate; got {key!r}")


def composite(mapping: Mapping | None = None, /, *pairs, name: str = "") -> Composite:
    """A composite from `{matcher: rule}` (insertion order is priority) and/or `(matcher, rule)` pairs.

    A matcher is a kind name ("relu"), `Path("layer4")`, `First("relu")`, `Where(predicate)` or a
    plain predicate `site -> bool`.
    """
    items = list((mapping or {}).items()) + list(pairs)
    return Composite(tuple((_matcher(k), r) for k, r in items), name)


def as_composite(rules) -> Composite:
    """A Composite as it is; a single rule for every site of its kinds."""
    if isinstance(rules, Composite):
        return rules
    kinds = getattr(rules, "kinds", None)
    if kinds:
        return Composite(tuple((Kind(k), rules) for k in kinds), repr(rules))
    raise TypeError(f"expected a rules.Composite or a rule (e.g. rules.guided_relu); got {rules!r}")


def on_layers(rule, layers, kind: str = "relu") -> Composite:
    """`rule` at the `kind` sites under the given layer paths only (None: everywhere)."""
    if layers is None:
        return as_composite(rule)
    if isinstance(layers, str):
        layers = (layers,)
    return Composite(tuple((Path(p, kind), rule) for p in layers))
