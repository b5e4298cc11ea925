"""``DictActionWrapper``: RetailSim-v0's action as a Dict of absolute prices, depths and order fractions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from retailsim_env.core import InvalidActionError, check_action_shape

ACTION_KEYS = ("price", "promo", "order")


class DictActionWrapper(gym.ActionWrapper):
    """Actions ``{"price": [M*K] shelf prices, "promo": [M*K] depths, "order": [M*K] fractions in [0, 1] of
    the largest order}``, each a float32 Box with the product's bounds; encoded into the flat [-1, 1] Box of
    the wrapped env (SB3 cannot train Dict actions: use this for scripted or hand-written policies).

    A promo depth of 0 is no promotion; any depth above 0 is one, and a promotion is never shallower than
    ``EnvConfig.min_promo_depth``: depths between 0 and it are raised to it (the promo Box starts at 0 so
    that "none" stays in it). Values outside their Box are clipped to it and counted in
    ``info["clipped_actions"]``, as the flat env counts its own."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        sim = env.unwrapped.sim
        m, k = sim.shape
        market = sim.market
        low, high = market.price_min.ravel(), market.price_max.ravel()  # [M, K] in the flat layout's order
        self.action_space = spaces.Dict({
            "price": spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32),
            "promo": spaces.Box(0.0, sim.config.max_promo_depth, (m * k,), np.float32),
            "order": spaces.Box(0.0, 1.0, (m * k,), np.float32),
        })  # fmt: skip

    def step(self, action: dict) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        info["clipped_actions"] += self._outside(action)
        return obs, reward, terminated, truncated, info

    def _outside(self, action: dict) -> int:
        """Values of ``action`` outside their Box (by more than float32 rounding of its bounds)."""
        count = 0
        for name in ACTION_KEYS:
            box, value = self.action_space[name], np.ravel(action[name]).astype(np.float64)
            tolerance = 1e-6 * np.maximum(np.abs(box.high), 1.0)
            count += int(((value < box.low - tolerance) | (value > box.high + tolerance)).sum())
        return count

    def action(self, action: dict) -> np.ndarray:
        sim = self.env.unwrapped.sim
        m, k = sim.shape
        missing = [name for name in ACTION_KEYS if name not in action]
        if missing:
            raise InvalidActionError(f"action: missing {missing} (a dict of {list(ACTION_KEYS)})")
        parts = [check_action_shape(np.ravel(action[name]), (m * k,), f"action[{name!r}]").reshape(1, m, k) for name in ACTION_KEYS]
        return sim.encode(*parts)[0]
