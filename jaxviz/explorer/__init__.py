"""The run explorer: `jaxviz report RUN_DIR` on an attribution run writes a static site to browse it.

Images as rows, methods as columns, thumbnails drawn once as sprites; filter and sort by class,
prediction, probability, status, file name and `jaxviz evaluate`'s metrics; a detail view per image;
two or more runs side by side. It works opened from disk (`file://`) and from any static host, and
stays fast at 100 000 images (data in shards loaded one after another, only the rows in view drawn).

    from jaxviz.explorer import build_explorer
    build_explorer(["runs/a", "runs/b"])           # → runs/a/explorer/index.html, b beside a
"""

from .build import build_explorer
from .collect import Run, read_run

__all__ = ["Run", "build_explorer", "read_run"]
