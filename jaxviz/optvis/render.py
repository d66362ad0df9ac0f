"""The one render loop: `jit` of `lax.scan` over steps of any optax optimizer, `vmap`ped over units.

Data flow per step (STYLE.md): parameterization → transforms → preprocessing → model → objective
→ optimizer. One *unit* is one thing to visualize (a class, a channel, a target image pair); its
description is any pytree (`units`, leading axis U) that `objective_fn(unit)` turns into an
`Objective`, so `lambda c: class_logit(c)` over `units = jnp.arange(10)` renders ten classes in one
compiled call. Each unit has its own PRNG key; step `i` uses `fold_in(key, i)`, so a run split
into chunks of steps (for a progress bar) gives exactly the same images as one long scan.

`Renderer` compiles once per shape: calling it again with the same shapes does not retrace
(`renderer.traces` counts traces; tests assert it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ..core import as_net
from ..data.preprocess import Preprocessing, normalize
from ..taps import run
from .objectives import IMAGE, LOGITS, Objective
from .param import Param
from .transforms import Transform

Unit = Any  # a pytree of arrays describing one unit (class index, channel, images, ...)


CPU_CHUNK = 8
"""Steps per compiled call when chunks are unrolled (the default on CPU, see `Renderer`)."""


class RenderState(NamedTuple):
    """What the scan carries, per unit: raw params, optimizer state, and whether `stop` fired."""

    raw: Any
    opt_state: Any
    done: jax.Array


class RenderResult(NamedTuple):
    """images `(U, B, H, W, 3)` in [0, 1]; raw params; losses `(U, steps)` (−objective before each
    step); steps_run `(U,)` (steps before `stop` fired, or all)."""

    images: np.ndarray
    raw: Any
    losses: np.ndarray
    steps_run: np.ndarray


def model_acts(model, variables, pp: Preprocessing, img: jax.Array, layers: tuple[str, ...]) -> dict[str, jax.Array]:
    """Activations of `layers` (module paths or aliases) for display-space images `(B, H, W, 3)`;
    `logits` is the model output. `model` is any model (`jaxviz.core`)."""
    net = as_net(model)
    names = [n for n in dict.fromkeys(layers) if n not in (IMAGE, LOGITS)]
    out, acts = run(net, variables, normalize(img, pp), names)
    found = {n: acts[net.resolve(n)] for n in names}
    if LOGITS in layers:
        found[LOGITS] = out
    return found


class Renderer:
    """A compiled optimizer loop for one model, objective family, parameterization and optimizer.

    Args:
      model, variables, pp: any model (`jaxviz.core`), its variables and its preprocessing (images are normalized
        inside the loss, so the optimized image is always display-space RGB in [0, 1]).
      objective_fn: `unit -> Objective` (the value is maximized).
      param: the parameterization (`param.pixel`, `param.fourier`, ...).
      optimizer: any optax `GradientTransformation`.
      transforms: `(key, img) -> img` applied before the model, or None.
      project: `(raw, unit) -> raw` after each step besides `param.project` (an L∞ ball).
      after_step: `(raw, grad, step, unit) -> raw` after the optimizer step and both projections,
        with the loss gradient at the pre-step image and the global step index (Yosinski et al.
        2015's blur and clipping between steps, `step_regularizers`).
      stop: `(acts, unit) -> bool`: once true for a unit, its image freezes (adversarial "until the
        model predicts the target"); `acts` are those the objective read, on the pre-step image.
      chunk: steps per compiled call (the scan length); `run` loops over chunks.
      unroll: unroll each chunk's scan completely (None: on CPU only). XLA:CPU runs the body of a
        loop several times slower than the same ops outside one (the conv kernels lose their
        threading); fully unrolled chunks of `CPU_CHUNK` steps avoid it at a moderate compile time.
      unit_batch: when set, units run `unit_batch` at a time inside the compiled call
        (`lax.map(..., batch_size=unit_batch)`): bounded memory for many units on an accelerator,
        and on CPUs, whose convolutions gain little from large batches, often faster.
    """

    def __init__(
        self,
        model,
        variables,
        pp: Preprocessing,
        objective_fn: Callable[[Unit], Objective],
        param: Param,
        optimizer: optax.GradientTransformation,
        *,
        transforms: Transform | None = None,
        project: Callable[[Any, Unit], Any] | None = None,
        stop: Callable[[dict, Unit], jax.Array] | None = None,
        chunk: int = 32,
        unit_batch: int | None = None,
        unroll: bool | None = None,
        after_step: Callable[[Any, Any, jax.Array, Unit], Any] | None = None,
    ):
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.model, self.variables, self.pp = as_net(model), variables, pp
        self.objective_fn, self.param, self.optimizer = objective_fn, param, optimizer
        self.transforms, self.project, self.stop, self.chunk = transforms, project, stop, chunk
        self.after_step = after_step
        self.unit_batch = unit_batch
        self.unroll = jax.default_backend() == "cpu" if unroll is None else unroll
        self.traces = 0
        self._init = jax.jit(jax.vmap(self._init_one))
        self._scan = jax.jit(self._scan_all, static_argnums=(4,))
        self._value = jax.jit(jax.vmap(self._value_one))

    # --- one unit ---------------------------------------------------------------------------
    def _loss(self, raw, key, unit):
        img = self.param.to_image(raw)
        x = self.transforms(key, img) if self.transforms is not None else img
        obj = self.objective_fn(unit)
        acts = model_acts(self.model, self.variables, self.pp, x, obj.layers)
        acts[IMAGE] = img
        reached = self.stop(acts, unit) if self.stop is not None else jnp.zeros((), bool)
        return -obj(acts), reached

    def _step(self, unit, key, state: RenderState, i):
        (loss, reached), g = jax.value_and_grad(self._loss, has_aux=True)(state.raw, jax.random.fold_in(key, i), unit)
        done = state.done | reached
        updates, opt_state = self.optimizer.update(g, state.opt_state, state.raw)
        raw = optax.apply_updates(state.raw, updates)
        if self.param.project is not None:
            raw = self.param.project(raw)
        if self.project is not None:
            raw = self.project(raw, unit)
        if self.after_step is not None:
            raw = self.after_step(raw, g, i, unit)
        keep = lambda old, new: jnp.where(done, old, new)
        new = RenderState(
            jax.tree_util.tree_map(keep, state.raw, raw), jax.tree_util.tree_map(keep, state.opt_state, opt_state), done
        )
        return new, (loss, done)

    def _scan_one(self, state: RenderState, key, unit, start, n: int):
        return jax.lax.scan(
            lambda s, i: self._step(unit, key, s, i), state, start + jnp.arange(n), unroll=n if self.unroll else 1
        )

    def _scan_all(self, state, keys, units, start, n: int):
        self.traces += 1  # runs only while tracing: counts compilations
        if self.unit_batch and self.unit_batch < _count(keys):
            return jax.lax.map(lambda a: self._scan_one(*a, start, n), (state, keys, units), batch_size=self.unit_batch)
        return jax.vmap(self._scan_one, in_axes=(0, 0, 0, None, None))(state, keys, units, start, n)

    def _init_one(self, key, raw0):
        raw = self.param.init(key) if raw0 is None else raw0
        return RenderState(raw, self.optimizer.init(raw), jnp.zeros((), bool))

    def _value_one(self, raw, unit):
        obj = self.objective_fn(unit)
        img = self.param.to_image(raw)
        acts = model_acts(self.model, self.variables, self.pp, img, obj.layers)
        acts[IMAGE] = img
        return obj(acts)

    # --- public -----------------------------------------------------------------------------
    def init(self, keys: jax.Array, raw0=None) -> RenderState:
        """Initial state for U units: `param.init(key)` per unit, or the given raw params `(U, ...)`."""
        if raw0 is None:
            return self._init(keys, None)
        return jax.vmap(self._init_one)(keys, raw0)

    def steps(self, state: RenderState, keys: jax.Array, units: Unit, start: int, n: int):
        """Run steps `start .. start+n-1` for all units; returns the new state and per-step
        `(losses (U, n), done (U, n))`."""
        return self._scan(state, keys, units, jnp.asarray(start, jnp.int32), n)

    def value(self, raw, units: Unit) -> np.ndarray:
        """The objective (no transforms) of each unit's current image, `(U,)`."""
        return np.asarray(self._value(raw, units))

    def images(self, raw) -> jax.Array:
        return jax.vmap(self.param.to_image)(raw)

    def run(
        self, keys: jax.Array, units: Unit, steps: int, *, raw0=None, progress: bool = False, desc: str = "render"
    ) -> RenderResult:
        """`steps` steps for every unit in chunks of `self.chunk` (one tqdm tick per chunk).

        Args:
          keys: `(U,)` PRNG keys, one per unit (init and transforms).
          units: pytree with leading axis U.
          raw0: optional starting raw params `(U, ...)` (octaves, a photo); else `param.init`.
        """
        state = self.init(keys, raw0)
        losses, dones = [], []
        with tqdm(total=steps, desc=desc, unit="step", disable=not progress, leave=False) as bar:
            start, chunk = 0, min(self.chunk, CPU_CHUNK) if self.unroll else self.chunk
            while start < steps:
                n = min(chunk, steps - start)
                state, (loss, done) = self.steps(state, keys, units, start, n)
                losses.append(np.asarray(loss))
                dones.append(np.asarray(done))
                start += n
                bar.update(n)
        loss = np.concatenate(losses, axis=1) if losses else np.zeros((_count(keys), 0), np.float32)
        done = np.concatenate(dones, axis=1) if dones else np.zeros((_count(keys), 0), bool)
        steps_run = np.where(done.any(1), done.argmax(1), steps).astype(np.int32)
        return RenderResult(np.asarray(self.images(state.raw)), state.raw, loss, steps_run)


def _count(keys) -> int:
    return int(keys.shape[0])


def unit_keys(seed: int | jax.Array, n: int) -> jax.Array:
    """`n` independent keys from a seed: unit i of a big run equals a single run with key i."""
    key = jax.random.key(seed) if isinstance(seed, int) else seed
    return jax.random.split(key, n)


__all__ = ["RenderResult", "RenderState", "Renderer", "model_acts", "unit_keys"]
