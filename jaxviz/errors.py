"""Error types that more than one module raises (each module keeps its own where only it raises one)."""


class WeightsError(ValueError):
    """A weights file or argument is wrong; the message names it and says what to do."""
