"""Layer-wise relevance propagation (Bach et al. 2015; zennit's composites, `rules.lrp`).

The relevance starts at the output as the one-hot target (zennit's convention; `start="logit"`:
the target logit itself) and flows back through the model under the composite's rules; the map is
the relevance of each input value, `(N, H, W, C)`.
"""

from __future__ import annotations

import jax.numpy as jnp

from ..core import Attribution, finite_input, prepare
from ..rules.composite import Composite
from ..rules.lrp import lrp_composite
from .gradients import input_gradient
from .targets import Target

STARTS = ("onehot", "logit")


@finite_input
def lrp(
    model,
    variables,
    x,
    target: Target = None,
    composite: str | Composite = "epsilon_plus_flat",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    low=None,
    high=None,
    residual: bool = True,
    start: str = "onehot",
) -> Attribution:
    """LRP with a named composite (`rules.lrp.COMPOSITES`: epsilon_plus, epsilon_plus_flat,
    epsilon_gamma_box, epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat) or your own `Composite`.

    `epsilon` (dense layers), `gamma`, `stabilizer` (other rules), `low`/`high` (epsilon_gamma_box's
    input bounds, scalars or per channel) and `residual` (residual sums split in proportion, zennit's
    ResNet canonizer) configure a named composite. `start`: "onehot" or "logit".
    """
    if start not in STARTS:
        raise ValueError(f"lrp: start={start!r}; use one of {', '.join(STARTS)}")
    if not isinstance(composite, Composite):
        composite = lrp_composite(
            composite, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer, low=low, high=high, residual=residual
        )
    net, variables = prepare(model, variables)
    a = input_gradient(net.with_rules(composite), variables, x, target)
    if start == "logit":
        logit = jnp.take_along_axis(a.out, a.index[:, None], axis=1) if a.out.ndim == 2 else None
        if logit is None:
            raise ValueError("lrp: start='logit' needs a class target (logits), not a unit")
        a = a._replace(maps=a.maps * logit.reshape(-1, 1, 1, 1))
    return a
