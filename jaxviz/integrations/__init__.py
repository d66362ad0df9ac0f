"""Running jaxviz on other engines: `jaxviz.integrations.ray` (a Ray Data pipeline of attributor actors)."""
