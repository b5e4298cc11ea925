"""Rendering of a copy's episode: a text table ("ansi") and a weekly dashboard figure ("rgb_array")."""

from __future__ import annotations

import numpy as np


class Dashboard:
    """Keeps copy 0's weekly figures and draws them; matplotlib is imported only for images."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.weeks: list[dict] = []
        self._figure = None

    def clear(self) -> None:
        self.weeks = []

    def record(self, info: dict) -> None:
        market = self.sim.market
        self.weeks.append({**info, "price_ratio": (market.price[0] / market.reference_price).mean(),
                           "depth": market.depth[0].mean(), "stock": market.stock[0].sum()})  # fmt: skip

    def text(self) -> str:
        market = self.sim.market
        week = int(market.week[0]) - (1 if market.t[0] else 0)  # the week just simulated; at reset, the first
        lines = [f"week {week}  step {int(market.t[0])}/{self.sim.config.episode_length}"]
        if self.weeks:
            last = self.weeks[-1]
            lines.append(f"revenue {last['revenue']:.2f}  profit {last['profit']:.2f}  units {last['units']:.0f}  "
                         f"stock-outs {last['stockouts']:.0f}  violations {last['price_violations']:.0f}")  # fmt: skip
        lines.append(f"{'store':<12}{'product':<12}{'price':>8}{'ref':>8}{'promo':>7}{'stock':>8}{'sold':>7}{'forecast':>9}")
        for m, store in enumerate(market.store_codes):
            for k, product in enumerate(market.product_codes):
                lines.append(f"{store:<12}{product:<12}{market.price[0, m, k]:>8.2f}{market.reference_price[m, k]:>8.2f}"
                             f"{market.depth[0, m, k]:>7.0%}{market.stock[0, m, k]:>8.0f}{market.last_sold[0, m, k]:>7.0f}"
                             f"{market.forecast[0, m, k]:>9.1f}")  # fmt: skip
        return "\n".join(lines) + "\n"

    def image(self) -> np.ndarray:
        """[H, W, 3] uint8: profit, mean price ratio and promotion depth, stock and units over the episode."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as error:  # pragma: no cover - matplotlib is a dependency
            raise ImportError("render_mode='rgb_array' needs matplotlib: pip install matplotlib") from error
        if self._figure is None:
            self._figure = plt.figure(figsize=(8, 6), dpi=80)
        figure = self._figure
        figure.clf()
        axes = figure.subplots(3, 1, sharex=True)
        weeks = np.arange(1, len(self.weeks) + 1)
        series = lambda key: np.array([w[key] for w in self.weeks], dtype=float)  # noqa: E731
        if self.weeks:
            axes[0].bar(weeks, series("profit"), color="tab:green")
            axes[1].plot(weeks, series("price_ratio"), label="price / reference")
            axes[1].plot(weeks, 1 - series("depth"), label="1 - promo depth", linestyle="--")
            axes[2].plot(weeks, series("stock"), label="stock")
            axes[2].plot(weeks, series("units"), label="units sold")
            axes[1].legend(loc="upper right", fontsize=8)
            axes[2].legend(loc="upper right", fontsize=8)
        axes[0].set_ylabel("profit")
        axes[1].set_ylabel("price")
        axes[2].set_ylabel("units")
        axes[2].set_xlabel("episode week")
        figure.suptitle(f"RetailSim: {', '.join(self.sim.market.store_codes)}")
        figure.canvas.draw()
        return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        if self._figure is not None:
            import matplotlib.pyplot as plt

            plt.close(self._figure)
            self._figure = None
