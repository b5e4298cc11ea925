"""``retailsim agents evaluate``: a trained policy against the baselines, in the learned and oracle markets.

Every policy plays the same ``episodes`` (copy i of a vector env seeded ``seed`` + i: common random
numbers, so differences between policies are not draws) of the run's environment, and again with
``demand="oracle"`` when the scenario has ground truth, so each policy's sim-to-real gap is visible.
Per policy and mode, ``report.json`` holds:

- ``profit``: mean episode profit (raw, not the shaped reward) and its standard deviation over episodes;
- ``profit_lift_vs_historical``: mean profit / historical pricing's mean profit - 1 (NaN when that is <= 0);
- ``revenue_wow_variance``: variance of the week-over-week relative change of revenue (mean over episodes;
  None for episodes of one week);
- ``price_violations``: discounted prices below unit cost per episode; ``edge_share``: share of prices
  within ``EnvConfig.edge_margin`` (5%) of their range from a bound (edge hugging); ``promo_share``:
  share of product-weeks on promotion;
- ``stockout_share``: share of demanded units lost; ``shaped_return``: the reward the agent trained on,
  and ``return_terms`` the same return term by term (each reward component times its weight, the
  penalty negative; they sum to ``shaped_return``).

PNG plots beside it: ``profit_lift.png`` (both modes), ``weekly_profit.png`` (learned mode),
``pricing_behaviour.png`` (edge and promotion shares).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from world_model.errors import RetailSimError

from retailsim_env import RetailSimVectorEnv, Scenario
from retailsim_env.core import BatchedRetailSim

from agents.envargs import build_env
from agents.policies import BASELINES, HistoricalPricing
from agents.runs import CONFIG_FILE, check_run_files, config_errors, load_run_file, read_run_config

RECORDED = ("profit", "revenue", "price_violations", "edge_share", "promo_share", "demand", "stockout_units")


class Policy(Protocol):
    name: str

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray: ...


class PPOPolicy:
    """A trained run's deterministic policy, observations normalized with its saved statistics."""

    name = "ppo"

    def __init__(self, run_dir: Path | str) -> None:
        from stable_baselines3 import PPO

        from agents.train import MODEL_FILE, STATS_FILE

        self.run_dir = Path(run_dir)
        check_run_files(self.run_dir, (MODEL_FILE, STATS_FILE))
        self.model = load_run_file(self.run_dir / MODEL_FILE, lambda path: PPO.load(path, device="cpu"))
        # a VecNormalize without its env: only normalize_obs is used
        self.stats = load_run_file(self.run_dir / STATS_FILE, _unpickle)

    def act(self, sim: BatchedRetailSim, observation: np.ndarray) -> np.ndarray:
        trained = self.model.observation_space.shape
        if observation.shape[1:] != trained:  # SB3 would raise deep in predict, naming neither run nor cause
            raise RetailSimError(f"{self.run_dir}: the policy was trained on observations of shape {trained}, this "
                                 f"environment's are {observation.shape[1:]} (its scenario or env_kwargs differ)")  # fmt: skip
        action, _ = self.model.predict(self.stats.normalize_obs(observation), deterministic=True)
        return action


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        return pickle.load(handle)


def run_episodes(policy: Policy, venv: RetailSimVectorEnv, seed: int) -> dict[str, np.ndarray]:
    """One episode per copy; weekly info arrays [episodes, weeks] and the shaped reward. A policy with a
    ``reset()`` (``RandomPolicy``) is reset first, so every run of it draws the same actions."""
    if hasattr(policy, "reset"):
        policy.reset()
    obs, _ = venv.reset(seed=seed)
    sim = venv.batch.sim
    weeks = sim.config.episode_length
    signed = sim.config.reward.signed()
    out = {key: np.zeros((venv.num_envs, weeks)) for key in (*RECORDED, "reward", *(f"term_{t}" for t in signed))}
    for t in range(weeks):
        obs, reward, _, _, info = venv.step(policy.act(sim, obs))
        out["reward"][:, t] = reward
        for key in RECORDED:
            out[key][:, t] = info[key]
        for term, weight in signed.items():
            out[f"term_{term}"][:, t] = weight * info[f"reward_{term}"]
    return out


def summarize(weekly: dict[str, np.ndarray]) -> dict[str, Any]:
    profit = weekly["profit"].sum(1)
    revenue = weekly["revenue"]
    change = np.diff(revenue, axis=1) / np.maximum(revenue[:, :-1], 1e-9)
    return {
        "profit": float(profit.mean()), "profit_sd": float(profit.std()),
        "revenue": float(revenue.sum(1).mean()),  # None for 1-week episodes: no week-over-week change
        "revenue_wow_variance": float(change.var(axis=1).mean()) if change.shape[1] else None,
        "price_violations": float(weekly["price_violations"].sum(1).mean()),
        "edge_share": float(weekly["edge_share"].mean()), "promo_share": float(weekly["promo_share"].mean()),
        "stockout_share": float(weekly["stockout_units"].sum() / max(weekly["demand"].sum(), 1e-9)),
        "shaped_return": float(weekly["reward"].sum(1).mean()),
        "return_terms": {key[len("term_"):]: float(value.sum(1).mean()) for key, value in weekly.items()
                         if key.startswith("term_")},
    }  # fmt: skip


def profit_lift(profit: float, base: float) -> float:
    """``profit`` / ``base`` - 1, the lift over the reference profit; NaN when ``base`` <= 0 (no meaningful ratio)."""
    return profit / base - 1.0 if base > 0 else float("nan")


def evaluate_policies(policies: list[Policy], env_kwargs: dict[str, Any], episodes: int = 8, seed: int = 1000,
                      modes: tuple[str, ...] | None = None, progress: bool = False) -> dict:  # fmt: skip
    """The report (module docstring) for ``policies`` (historical pricing is added when missing);
    ``progress``: a bar over the policies' runs (the demo's evaluation takes about a minute on 2 cores)."""
    if not any(p.name == HistoricalPricing.name for p in policies):
        policies = [HistoricalPricing(), *policies]
    if modes is None:
        scenario = Scenario(env_kwargs.get("scenario"))
        modes = ("learned", "oracle") if scenario.has_ground_truth else ("learned",)
    report: dict[str, Any] = {"episodes": episodes, "seed": seed, "env_kwargs": env_kwargs, "modes": {}}
    weekly_profit: dict[str, dict[str, list[float]]] = {}
    with evaluation_bar(len(modes) * len(policies), progress) as bar:
        for mode in modes:
            venv = build_env(lambda: RetailSimVectorEnv(episodes, **{**env_kwargs, "demand": mode}), env_kwargs)
            results, weekly_profit[mode] = {}, {}
            for policy in policies:
                bar.set_postfix_str(f"{mode}: {policy.name}")
                weekly = run_episodes(policy, venv, seed)
                results[policy.name] = summarize(weekly)
                weekly_profit[mode][policy.name] = weekly["profit"].mean(0).tolist()
                bar.update()
            base = results[HistoricalPricing.name]["profit"]
            for figures in results.values():
                figures["profit_lift_vs_historical"] = profit_lift(figures["profit"], base)
            report["modes"][mode] = results
    report["weekly_profit"] = weekly_profit
    return report


@contextmanager
def evaluation_bar(total: int, enabled: bool) -> Iterator[tqdm]:
    """A bar over an evaluation's policy runs; on an error it is cleared from the terminal, so the error's
    one line is all that stays."""
    bar = tqdm(total=total, desc="evaluate", unit="policy", disable=not enabled)
    try:
        yield bar
    except BaseException:
        bar.leave = False
        raise
    finally:
        bar.close()


def run_env_kwargs(run_dir: Path) -> dict[str, Any]:
    """The ``env_kwargs`` a ``retailsim agents train`` run trained on (its config.json)."""

    def env_kwargs_of(config: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(config["env_kwargs"], dict):
            raise TypeError(f"env_kwargs is {type(config['env_kwargs']).__name__}, not an object")
        return config["env_kwargs"]

    check_run_files(run_dir, (CONFIG_FILE,))
    return read_run_config(run_dir, env_kwargs_of)


def evaluate_run(run_dir: Path | str, out: Path | str, episodes: int = 8, seed: int = 1000,
                 baselines: tuple[str, ...] = tuple(BASELINES), progress: bool = False) -> dict:  # fmt: skip
    """Evaluate a ``retailsim agents train`` run against ``baselines``; write report.json and the plots."""
    from agents.plots import plot_report, write_report

    run_dir, out = Path(run_dir), Path(out)
    env_kwargs = run_env_kwargs(run_dir)
    policies: list[Policy] = [BASELINES[name] for name in baselines] + [PPOPolicy(run_dir)]
    with config_errors(run_dir):
        report = evaluate_policies(policies, env_kwargs, episodes=episodes, seed=seed, progress=progress)
    report["run"] = str(run_dir)
    write_report(report, out, plot_report)
    return report


def format_report(report: dict) -> str:
    """A table per mode: profit, lift, violations, edge and promotion shares, stock-outs and the shaped
    return with its boundary penalty."""
    lines = []
    for mode, results in report["modes"].items():
        lines.append(f"{mode} market ({report['episodes']} episodes):")
        lines.append(f"  {'policy':<16}{'profit':>11}{'lift':>9}{'violations':>12}{'edge':>7}{'promo':>7}{'stock-out':>11}"
                     f"{'return':>9}{'penalty':>9}")  # fmt: skip
        for name, r in results.items():
            lines.append(f"  {name:<16}{r['profit']:>11.1f}{r['profit_lift_vs_historical']:>+9.1%}"
                         f"{r['price_violations']:>12.1f}{r['edge_share']:>7.1%}{r['promo_share']:>7.1%}"
                         f"{r['stockout_share']:>11.1%}{r['shaped_return']:>9.2f}"
                         f"{r['return_terms']['boundary_penalty']:>9.2f}")  # fmt: skip
    return "\n".join(lines)
