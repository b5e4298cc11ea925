"""``retailsim agents train-multi``: PPO for the PettingZoo market's agents, batched over env copies.

The agents of a mode (``retailsim_env.multi_agent``: pricing/promo/inventory, or competing stores) learn
at once on ``num_envs`` copies of the market stepped as one batch (``MultiAgentView``), each with its own
actor-critic ("independent", the default) or one network for all with the agent's one-hot appended to a
zero-padded observation ("shared": parameter sharing). A compact PPO in the CleanRL mould: Gaussian
policy with a learned state-independent log-std, actions clipped to the Box for the env, GAE, clipped
surrogate, value loss, gradient clipping, per-agent running observation normalization; episodes end by
truncation, so the last reward is bootstrapped with the value of the final observation.

TensorBoard tags: ``charts/episodic_return/<agent>``, ``charts/episodic_profit``, ``losses/policy/<agent>``,
``losses/value/<agent>``, ``charts/SPS``. The copies' episodes start and end together, an episode round;
``charts/episodic_return`` is a round's mean over the copies. ``summary.json`` holds ``episode_rounds``,
``episodes`` (rounds x copies) and each agent's mean episodic return over the first and the last
``report_episodes`` rounds and whether it improved.

Scaling out: the same PettingZoo env runs under Ray RLlib through its PettingZoo wrapper
(``ray.rllib.env.wrappers.pettingzoo_env.ParallelPettingZooEnv``), with one policy per agent id and
rollout workers on a cluster; see docs/agents.md.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from agents.envargs import build_env
from agents.evaluate import evaluation_bar, profit_lift
from agents.policies import HistoricalPricing
from agents.runs import CONFIG_FILE, check_run_files, config_errors, load_run_file, read_run_config

from world_model.errors import RetailSimError

from retailsim_env.env import open_sim
from retailsim_env.scenario import Scenario
from retailsim_env.multi_agent import MODES, MultiAgentView, store_count

POLICIES_FILE = "policies.pt"
log = logging.getLogger("retailsim.agents")  # under the CLI's "retailsim" handler: one line


@dataclass
class MultiAgentTrainConfig:
    """One multi-agent run."""

    mode: str = "functions"
    """"functions" (pricing, promo, inventory on one store) or "competition" (stores)."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"propensities": "fixed"})
    """Keyword arguments of ``parallel_env`` but ``mode`` and ``render_mode`` (scenario, stores, n_stores,
    products, episode_length, start_week, ...)."""
    timesteps: int = 100_000
    """Environment steps in total (weeks x copies); every agent acts in each."""
    num_envs: int = 8
    n_steps: int = 128
    """Steps per copy per rollout."""
    n_epochs: int = 5
    minibatch_size: int = 256
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    sharing: str = "independent"
    """"independent" (a network per agent) or "shared" (one network, agent one-hot appended)."""
    seed: int = 0
    report_episodes: int = 8
    """Episode rounds (each the mean over the ``num_envs`` copies' episodes) averaged for the first and
    the last returns in summary.json."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.sharing not in ("independent", "shared"):
            raise ValueError(f"sharing must be 'independent' or 'shared', got {self.sharing!r}")


class RunningNormalizer:
    """Running mean and variance of observations (Welford over batches), clipped to +-10 after scaling."""

    def __init__(self, size: int) -> None:
        self.mean, self.var, self.count = np.zeros(size), np.ones(size), 1e-4

    def update(self, x: np.ndarray) -> None:
        batch_mean, batch_var, n = x.mean(0), x.var(0), len(x)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -10, 10).astype(np.float32)

    def state(self) -> dict:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": self.count}


class ActorCritic(nn.Module):
    def __init__(self, observation_size: int, action_size: int, hidden: int) -> None:
        super().__init__()
        self.actor = nn.Sequential(nn.Linear(observation_size, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                   nn.Linear(hidden, action_size))  # fmt: skip
        self.critic = nn.Sequential(nn.Linear(observation_size, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                    nn.Linear(hidden, 1))  # fmt: skip
        self.log_std = nn.Parameter(torch.zeros(action_size))
        nn.init.orthogonal_(self.actor[-1].weight, 0.01)
        nn.init.zeros_(self.actor[-1].bias)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(obs), self.log_std.exp())

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


@dataclass
class Acted:
    """One agent's step for B copies: the env action (clipped), the raw sample, its log-prob, the value
    estimate and the network input."""

    action: np.ndarray
    raw: torch.Tensor
    logp: torch.Tensor
    value: torch.Tensor
    x: torch.Tensor


class AgentLearners:
    """The networks, optimizers and normalizers of every agent (independent or shared)."""

    def __init__(self, view: MultiAgentView, config: MultiAgentTrainConfig) -> None:
        self.agents, self.sharing = list(view.agents), config.sharing
        self.obs_size = {a: view.observation_size(a) for a in self.agents}
        self.act_size = {a: view.action_size(a) for a in self.agents}
        self.normalizers = {a: RunningNormalizer(self.obs_size[a]) for a in self.agents}
        if self.sharing == "shared":
            width = max(self.obs_size.values()) + len(self.agents)
            net = ActorCritic(width, max(self.act_size.values()), config.hidden)
            self.nets = {a: net for a in self.agents}
        else:
            self.nets = {a: ActorCritic(self.obs_size[a], self.act_size[a], config.hidden) for a in self.agents}
        unique = {id(n): n for n in self.nets.values()}
        self.optimizers = {i: torch.optim.Adam(n.parameters(), lr=config.learning_rate, eps=1e-5) for i, n in unique.items()}

    def inputs(self, agent: str, obs: np.ndarray, update: bool = False) -> torch.Tensor:
        """Normalized (and for sharing, padded and tagged) observations [B, in]."""
        if update:
            self.normalizers[agent].update(obs)
        x = self.normalizers[agent](obs)
        if self.sharing == "shared":
            width = max(self.obs_size.values())
            tag = np.zeros((len(x), len(self.agents)), np.float32)
            tag[:, self.agents.index(agent)] = 1.0
            x = np.concatenate([np.pad(x, ((0, 0), (0, width - x.shape[1]))), tag], 1)
        return torch.from_numpy(x)

    def act(self, observations: dict[str, np.ndarray], deterministic: bool = False,
            update: bool = False) -> dict[str, Acted]:  # fmt: skip
        """One action per agent and copy (``update``: fold the observations into the normalizers first)."""
        out = {}
        with torch.no_grad():
            for agent in self.agents:
                x = self.inputs(agent, observations[agent], update)
                net = self.nets[agent]
                dist = net.distribution(x)
                raw = dist.mean if deterministic else dist.sample()
                raw = raw[:, : self.act_size[agent]] if self.sharing == "shared" else raw
                full = torch.nn.functional.pad(raw, (0, dist.mean.shape[1] - raw.shape[1]))
                logp = dist.log_prob(full)[:, : raw.shape[1]].sum(-1)
                out[agent] = Acted(raw.clamp(-1, 1).numpy(), raw, logp, net.value(x), x)
        return out

    def mean_actions(self, view: MultiAgentView) -> dict[str, np.ndarray]:
        """Every agent's deterministic (mean) action on ``view``'s observations: the policy evaluated."""
        return {agent: acted.action for agent, acted in self.act(view.observations(), deterministic=True).items()}

    def state(self) -> dict:
        nets = {a: n.state_dict() for a, n in self.nets.items()}
        return {"sharing": self.sharing, "nets": nets, "normalizers": {a: n.state() for a, n in self.normalizers.items()},
                "obs_size": self.obs_size, "act_size": self.act_size}  # fmt: skip


def _ppo_update(learners: AgentLearners, agent: str, batch: dict[str, torch.Tensor], config: MultiAgentTrainConfig,
                rng: np.random.Generator) -> tuple[float, float]:  # fmt: skip
    net = learners.nets[agent]
    optimizer = learners.optimizers[id(net)]
    n = len(batch["x"])
    policy_losses, value_losses = [], []
    size = learners.act_size[agent]
    for _ in range(config.n_epochs):
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, config.minibatch_size):
            idx = order[start : start + config.minibatch_size]
            dist = net.distribution(batch["x"][idx])
            raw = torch.nn.functional.pad(batch["raw"][idx], (0, dist.mean.shape[1] - size))
            logp = dist.log_prob(raw)[:, :size].sum(-1)
            ratio = (logp - batch["logp"][idx]).exp()
            adv = batch["adv"][idx]
            if len(adv) > 1:  # a one-sample minibatch (a rollout's tail) has no spread: its std is NaN
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            policy_loss = -torch.min(ratio * adv, ratio.clamp(1 - config.clip_range, 1 + config.clip_range) * adv).mean()
            value_loss = ((net.value(batch["x"][idx]) - batch["ret"][idx]) ** 2).mean()
            entropy = dist.entropy()[:, :size].sum(-1).mean()
            loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), config.max_grad_norm)
            optimizer.step()
            policy_losses.append(policy_loss.item())
            value_losses.append(value_loss.item())
    if not policy_losses:  # n_epochs = 0: nothing updated
        return float("nan"), float("nan")
    return float(np.mean(policy_losses)), float(np.mean(value_losses))


def train_multi(config: MultiAgentTrainConfig, out: Path | str) -> dict:
    """Train every agent of ``config.mode``; write policies.pt, config.json, summary.json, tensorboard/. Bad
    ``env_kwargs`` raise ``EnvKwargsError`` before anything is written."""
    view = build_env(lambda: market_for(config, config.num_envs), config.env_kwargs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1) + "\n")
    learners = initial_learners(view, config)  # seeds torch: the rollouts' draws follow from it
    rng = np.random.default_rng(config.seed)
    sim = view.sim
    env_config = sim.config
    copies = np.arange(config.num_envs)
    rngs = [seeding.np_random(config.seed + i)[0] for i in range(config.num_envs)]
    starts = start_weeks(config, config.num_envs)
    sim.reset(copies, rngs, starts)
    writer = SummaryWriter(str(out / "tensorboard"))
    agents, weeks = view.agents, env_config.episode_length
    episode_returns = {a: np.zeros(config.num_envs) for a in agents}
    episode_profit = np.zeros(config.num_envs)
    history: dict[str, list[float]] = {a: [] for a in agents}
    steps, start = 0, time.perf_counter()
    bar = tqdm(total=config.timesteps, unit="step", desc=f"multi-agent PPO ({config.mode})", disable=not config.progress)
    observations = view.observations()
    while steps < config.timesteps:
        buffer = {a: {k: [] for k in ("x", "raw", "logp", "value", "reward", "done")} for a in agents}
        for _ in range(config.n_steps):
            acted = learners.act(observations, update=True)
            rewards, _, info = view.step({a: acted[a].action for a in agents})
            steps += config.num_envs
            bar.update(config.num_envs)
            episode_profit += info["profit"]
            truncated = sim.market.t >= weeks
            next_obs = view.observations()
            for a in agents:
                reward = rewards[a].astype(np.float64).copy()
                episode_returns[a] += reward
                if truncated.any():  # bootstrap the time limit with the value of the final observation
                    with torch.no_grad():
                        final = learners.nets[a].value(learners.inputs(a, next_obs[a])).numpy()
                    reward = reward + config.gamma * final * truncated
                step = acted[a]
                for key, value in (("x", step.x), ("raw", step.raw), ("logp", step.logp), ("value", step.value)):
                    buffer[a][key].append(value)
                buffer[a]["reward"].append(torch.from_numpy(reward).float())
            if truncated.all():
                for a in agents:
                    history[a].append(float(episode_returns[a].mean()))
                    writer.add_scalar(f"charts/episodic_return/{a}", history[a][-1], steps)
                    episode_returns[a][:] = 0.0
                writer.add_scalar("charts/episodic_profit", float(episode_profit.mean()), steps)
                episode_profit[:] = 0.0
                sim.reset(copies, rngs, starts)
                next_obs = view.observations()
            for a in agents:
                buffer[a]["done"].append(torch.from_numpy(truncated.astype(np.float32)))
            observations = next_obs
        with torch.no_grad():
            last_values = {a: learners.nets[a].value(learners.inputs(a, observations[a])) for a in agents}
        for a in agents:
            b = {k: torch.stack(v) for k, v in buffer[a].items()}  # [T, B, ...]
            advantages = torch.zeros_like(b["reward"])
            last = torch.zeros(config.num_envs)
            for t in reversed(range(config.n_steps)):
                next_value = last_values[a] if t == config.n_steps - 1 else b["value"][t + 1]
                not_done = 1.0 - b["done"][t]
                delta = b["reward"][t] + config.gamma * next_value * not_done - b["value"][t]
                last = delta + config.gamma * config.gae_lambda * not_done * last
                advantages[t] = last
            flat = {"x": b["x"].flatten(0, 1), "raw": b["raw"].flatten(0, 1), "logp": b["logp"].flatten(0, 1),
                    "adv": advantages.flatten(), "ret": (advantages + b["value"]).flatten()}  # fmt: skip
            policy_loss, value_loss = _ppo_update(learners, a, flat, config, rng)
            writer.add_scalar(f"losses/policy/{a}", policy_loss, steps)
            writer.add_scalar(f"losses/value/{a}", value_loss, steps)
        writer.add_scalar("charts/SPS", steps / (time.perf_counter() - start), steps)
    bar.close()
    writer.close()
    torch.save(learners.state(), out / POLICIES_FILE)
    summary = {"mode": config.mode, "sharing": config.sharing, "timesteps": steps, "seconds": time.perf_counter() - start,
               "episode_rounds": len(history[agents[0]]), "episodes": len(history[agents[0]]) * config.num_envs,
               "agents": {a: return_trend(history[a], config.report_episodes) for a in agents}}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def return_trend(returns: list[float], k: int) -> dict[str, Any]:
    """The mean of the first and of the last ``k`` episodes' returns and whether the last beat the first;
    with fewer than 2k episodes, of the first and the last half (None with fewer than 2: no trend)."""
    k = min(k, len(returns) // 2)
    first, last = returns[:k], returns[len(returns) - k :]
    return {"first_return": float(np.mean(first)) if first else None, "last_return": float(np.mean(last)) if last else None,
            "improved": bool(first and last and np.mean(last) > np.mean(first))}  # fmt: skip


def initial_learners(view: MultiAgentView, config: MultiAgentTrainConfig) -> AgentLearners:
    """The agents as a run of ``config`` starts them: torch seeded with ``config.seed``, then the networks
    (their mean actions lie within ~0.01 of each action box's centre, the last layers starting near zero:
    mid-range prices and orders, and, a promotion being on for any action above 0, about half the
    products promoted at the minimum depth)."""
    torch.manual_seed(config.seed)
    return AgentLearners(view, config)


def load_learners(run_dir: Path | str, view: MultiAgentView, config: MultiAgentTrainConfig) -> AgentLearners:
    """The trained agents of a ``train_multi`` run, on ``view``'s market."""
    path = Path(run_dir) / POLICIES_FILE
    state = load_run_file(path, lambda p: torch.load(p, weights_only=True))
    learners = AgentLearners(view, config)
    try:
        for agent in learners.agents:
            learners.nets[agent].load_state_dict(state["nets"][agent])
            normalizer = learners.normalizers[agent]
            saved = state["normalizers"][agent]
            normalizer.mean, normalizer.var, normalizer.count = np.array(saved["mean"]), np.array(saved["var"]), saved["count"]
    except (KeyError, TypeError, RuntimeError) as error:  # another market's agents or layers (the scenario changed)
        raise RetailSimError(f"{path}: the saved agents do not fit this market ({type(error).__name__}: "
                             f"{str(error).splitlines()[0]})") from error  # fmt: skip
    return learners


def historical_actions(view: MultiAgentView) -> dict[str, np.ndarray]:
    """Each agent's share of historical pricing: reference prices, no promotion, orders up to the forecast."""
    sim = view.sim
    m, k = sim.shape
    fields = HistoricalPricing().act(sim, None).reshape(-1, m, k, 3)
    if view.mode == "functions":
        return {agent: fields[:, 0, :, i] for i, agent in enumerate(view.agents)}
    return {agent: np.concatenate([fields[:, s, :, 0], fields[:, s, :, 1]], 1) for s, agent in enumerate(view.agents)}


def market_for(config: MultiAgentTrainConfig, n_copies: int, demand: str | None = None) -> MultiAgentView:
    """The run's market with ``n_copies`` copies (``demand`` overrides the run's; episodes start at
    ``start_weeks``)."""
    kwargs = {**config.env_kwargs, **({} if demand is None else {"demand": demand})}
    kwargs.pop("start_week", None)
    kwargs["n_stores"] = store_count(config.mode, kwargs.get("n_stores"))
    sim = open_sim(**kwargs)
    sim.market.allocate(n_copies)
    return MultiAgentView(sim, config.mode)


def start_weeks(config: MultiAgentTrainConfig, n_copies: int) -> np.ndarray | None:
    """Every copy's first week: ``env_kwargs["start_week"]``, or None (drawn per episode)."""
    week = config.env_kwargs.get("start_week")
    return None if week is None else np.full(n_copies, week)


def play(view: MultiAgentView, policy: Callable[[MultiAgentView], dict[str, np.ndarray]], seed: int,
         starts: np.ndarray | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """One episode per copy (starting at ``starts``) with ``policy(view) -> actions``; per agent the mean
    return, profit and ``return_terms``: each reward component's share of the return (penalties negative,
    summing to the return), so a return is read term by term."""
    sim = view.sim
    n = sim.market.n_copies
    sim.reset(np.arange(n), [seeding.np_random(seed + i)[0] for i in range(n)], starts)
    terms = {a: dict.fromkeys(view.reward_terms(a), 0.0) for a in view.agents}
    profit = {a: np.zeros(n) for a in view.agents}
    for _ in range(sim.config.episode_length):
        _, infos, _ = view.step(policy(view))
        for a in view.agents:
            for term, value in view.contributions(a, infos[a]).items():
                terms[a][term] += value
            profit[a] += infos[a]["profit"]
    return {a: {"return": float(sum(terms[a].values()).mean()), "profit": float(profit[a].mean()),
                "return_terms": {term: float(value.mean()) for term, value in terms[a].items()}}
            for a in view.agents}  # fmt: skip


def evaluate_multi(run_dir: Path | str, episodes: int = 8, seed: int = 1000, progress: bool = False) -> dict:
    """Trained agents against their historical counterparts, in the learned and (generated scenarios)
    oracle markets: per agent return (with its ``return_terms``, ``play``), profit and the profit lift; also
    the same agents untrained (as the run started them: ``initial_learners``), so what training added is
    visible beside what the starting policy already earns."""
    run_dir = Path(run_dir)
    check_run_files(run_dir, (CONFIG_FILE, POLICIES_FILE))
    config = read_run_config(run_dir, lambda fields: MultiAgentTrainConfig(**fields))
    if config.mode == "functions" and config.env_kwargs.get("n_stores") not in (None, 1):
        # runs from before n_stores was checked: trained on one store whatever config.json says
        log.warning(f"{run_dir / CONFIG_FILE}: mode 'functions' runs one store; n_stores "
                    f"{config.env_kwargs['n_stores']!r} ignored, as it was in training")  # fmt: skip
        config.env_kwargs = {**config.env_kwargs, "n_stores": 1}
    scenario = Scenario(config.env_kwargs.get("scenario"))
    modes = ("learned", "oracle") if scenario.has_ground_truth else ("learned",)
    report: dict[str, Any] = {"run": str(run_dir), "mode": config.mode, "episodes": episodes, "seed": seed, "modes": {}}
    starts = start_weeks(config, episodes)
    with evaluation_bar(3 * len(modes), progress) as bar:
        for demand in modes:
            with config_errors(run_dir):
                view = build_env(lambda: market_for(config, episodes, demand), config.env_kwargs)
            learners = load_learners(run_dir, view, config)
            with torch.random.fork_rng():  # the caller's torch stream is left as it was
                untrained_learners = initial_learners(view, config)
            played = {}
            for name, policy in (("trained", learners.mean_actions), ("untrained", untrained_learners.mean_actions),
                                 ("historical", historical_actions)):  # fmt: skip
                bar.set_postfix_str(f"{demand}: {name}")
                played[name] = play(view, policy, seed, starts)
                bar.update()
            trained, untrained, historical = played["trained"], played["untrained"], played["historical"]
            report["modes"][demand] = {
                agent: {"trained": trained[agent], "untrained": untrained[agent], "historical": historical[agent],
                        "profit_lift_vs_historical": profit_lift(trained[agent]["profit"], historical[agent]["profit"]),
                        "untrained_profit_lift_vs_historical": profit_lift(untrained[agent]["profit"],
                                                                           historical[agent]["profit"])}
                for agent in view.agents
            }  # fmt: skip
    return report


def evaluate_multi_run(run_dir: Path | str, out: Path | str, episodes: int = 8, seed: int = 1000,
                       progress: bool = False) -> dict:  # fmt: skip
    """``evaluate_multi`` of a ``train_multi`` run; write ``out``/report.json, agent_returns.png and
    return_terms.png (``agents.plots.plot_multi_report``)."""
    from agents.plots import plot_multi_report, write_report

    out = Path(out)
    report = evaluate_multi(run_dir, episodes=episodes, seed=seed, progress=progress)
    write_report(report, out, plot_multi_report)
    return report
