"""Power sampling on the student's own loss (Kirsch et al., TMLR 2023).

Draws m seeds without replacement with probability proportional to ``own_loss ** beta``, using
the Gumbel-top-k trick: the top m of ``beta * log(loss) + Gumbel noise`` are such a draw.
"""

from __future__ import annotations

import numpy as np

from loopkit import Field, Params, Selector, hookimpl, top_m


class PowerSelector(Selector):
    needs = frozenset({"own_loss"})

    class Params(Params):
        beta: float = Field(1.0, ge=0, description="sharpness: 0 is random, large follows the loss")

    def select(self, signals, pool_size, m, rng, history=()):
        # ``history`` (the seeds picked in earlier rounds) is not used: every round draws afresh.
        loss = np.clip(np.asarray(signals["own_loss"], dtype=np.float64), 1e-12, None)
        keys = self.params.beta * np.log(loss) + rng.gumbel(size=pool_size)
        return top_m(keys, m, rng, "power")


@hookimpl
def register_selectors(register):
    register("power", PowerSelector)
