"""The page each seed script writes beside its figures: every figure with the seed's caption and ours.

    from page import Figure, write_page
    write_page(out, "Seed 000 — VGG16 in PyTorch", [Figure("class_models.png", "Obr. 3: ...", "ours: ...")])

writes `out/index.md` and `out/index.html` (no scripts, every string escaped, images by relative
path, so the folder can be moved as a whole). Each script imports it as a sibling module.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for `python experiments/seeds/...`

from jaxviz.atomic import write_text  # noqa: E402

__all__ = ["Figure", "parse_only", "write_page"]


def parse_only(text: str | None, known: tuple[str, ...], what: str = "experiment") -> tuple[str, ...]:
    """A script's `--only a,b` as a tuple of `known` names (all of them when None); exits naming a bad one."""
    if not text:
        return known
    only = tuple(s.strip() for s in text.split(","))
    bad = [s for s in only if s not in known]
    if bad:
        raise SystemExit(f"--only: unknown {what}(s) {bad}; choose from {', '.join(known)}")
    return only


@dataclass(frozen=True)
class Figure:
    """One figure of a seed: the file (relative to the page), the seed's caption, what we did and
    what differs (and why), and numbers worth stating (name → value)."""

    path: str
    seed_caption: str
    ours: str
    differs: str = ""
    numbers: dict = field(default_factory=dict)


def write_page(out: str | Path, title: str, figures: list[Figure], intro: str = "") -> Path:
    """`out/index.md` and `out/index.html` for `figures`; returns the HTML path."""
    out = Path(out)
    md = [f"# {title}", "", intro, ""] if intro else [f"# {title}", ""]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2rem auto;padding:0 1rem}"
        "figure{margin:1.5rem 0}img{max-width:100%;border:1px solid #ddd}.seed{color:#555}"
        "td,th{border:1px solid #ccc;padding:.2rem .5rem}table{border-collapse:collapse}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for f in figures:
        md += [
            f"## {f.path}",
            "",
            f"![{f.seed_caption}]({f.path})",
            "",
            f"- seed: {f.seed_caption}",
            f"- ours: {f.ours}",
        ]
        if f.differs:
            md.append(f"- differs: {f.differs}")
        md += [f"- {k}: {v}" for k, v in f.numbers.items()] + [""]
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in f.numbers.items()
        )
        src = "/".join(html.escape(p) for p in Path(f.path).parts)
        parts.append(
            f"<figure><img src='{src}' alt='{html.escape(f.seed_caption)}'><figcaption>"
            f"<p class='seed'>Seed: {html.escape(f.seed_caption)}</p><p>Ours: {html.escape(f.ours)}</p>"
            + (f"<p>Differs: {html.escape(f.differs)}</p>" if f.differs else "")
            + (f"<table>{rows}</table>" if rows else "")
            + "</figcaption></figure>"
        )
    parts.append("</body></html>\n")
    write_text(out / "index.md", "\n".join(md) + "\n")
    path = out / "index.html"
    write_text(path, "\n".join(parts))
    return path
