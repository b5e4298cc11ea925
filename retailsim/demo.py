"""The demos: the main job on the embedded default, runnable right after install, no data, no GPU.

``retailsim demo`` (``run_demo``): PPO trains on RetailSim-v0 over the shipped default scenario (fixed
propensities, the fast path on a CPU; a few minutes on two cores), is evaluated against the baselines in
the learned market and in the generator's true market (oracle), and the TensorBoard run, the report and
its plots are written under ``--out``.

``retailsim data demo`` (``run_data_demo``): a small synthetic market with known truth (and a sprinkle of
injected defects, so the quarantine has something to show) is generated, ingested and summarized next to
the real sample's calibration facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from world_model.data.facts import SCALE_FREE_FACTS, compute_facts, format_facts
from world_model.data.ingest import IngestConfig, ingest, iter_report_lines
from world_model.data.synthetic import MarketConfig, generate_market
from world_model.errors import RetailSimError, check_output_dir
from world_model.files import recover_replaced, replacing


@dataclass(frozen=True)
class DataDemoConfig:
    """Size of the demo market: small enough for a laptop CPU in well under a minute."""

    customers: int = 1000
    products: int = 800
    stores: int = 20
    weeks: int = 26
    seed: int = 0
    dirty_rate: float = 0.002
    """Share of generated rows given one defect, to exercise the quarantine."""


def run_data_demo(out: Path, config: DataDemoConfig = DataDemoConfig(), progress: bool = True) -> dict:
    """Generate, ingest and summarize the demo market under ``out``; returns the ingest report. A previous
    data demo's ``raw/`` and ``ingested/`` are replaced; anything else under those names is refused."""
    raw, ingested = out / "raw", out / "ingested"
    check_output_dir(out, overwrite=True, flag="--out")
    _check_replaceable_output(raw, "a generated market", ("ground_truth",))
    _check_replaceable_output(ingested, "an ingested dataset", ("ingest_report.json",))
    market = MarketConfig(
        customers=config.customers, products=config.products, stores=config.stores, weeks=config.weeks, seed=config.seed
    )
    print(f"generating a synthetic market into {raw} ...")
    summary = generate_market(market, raw, dirty_rate=config.dirty_rate, progress=progress, overwrite=True)
    print(f"  {summary['rows']:,} rows, {summary['files']} weekly files, ground truth in {raw / 'ground_truth'}")
    print(f"ingesting into {ingested} ...")
    report = ingest(raw, ingested, IngestConfig(overwrite=True, progress=progress))
    for line in iter_report_lines(report):
        print(f"  {line}")
    print("size-independent facts, generated vs the real LGSR sample (full table: docs/calibration.md):")
    for line in format_facts(compute_facts(ingested), SCALE_FREE_FACTS).splitlines():
        print(f"  {line}")
    print(f"report: {ingested / 'ingest_report.json'}")
    return report


@dataclass(frozen=True)
class DemoConfig:
    """The main job: PPO on the default scenario's busiest store, 10 products, 52-week episodes."""

    timesteps: int = 500_000
    """Environment steps of PPO (3 to 6 minutes on two CPU cores; docs/agents.md has the measured times)."""
    episodes: int = 8
    """Evaluation episodes per policy and market (the same seeds for every policy)."""
    products: int = 10
    seed: int = 0


def run_demo(out: Path, config: DemoConfig = DemoConfig(), progress: bool = True) -> dict:
    """Train, evaluate and report under ``out``; returns the evaluation report. A previous demo there is
    replaced when this one completes, and kept when it fails or is interrupted."""
    from agents.plots import REPORT_FILE, REPORT_PLOTS
    from agents.runs import CONFIG_FILE

    check_output_dir(out, overwrite=True, flag="--out")
    run, report_dir = out / "ppo", out / "report"
    _check_replaceable_output(run, "a training run", (CONFIG_FILE,))
    _check_replaceable_output(report_dir, "an evaluation report", (REPORT_FILE, *REPORT_PLOTS))
    out.mkdir(parents=True, exist_ok=True)
    # A rerun replaces the last demo, not merges into it (TensorBoard would show both runs).
    with replacing([run, report_dir], flag="--out"):
        return _train_and_report(run, report_dir, config, progress)


def _check_replaceable_output(path: Path, what: str, markers: tuple[str, ...]) -> None:
    """Refuse to replace ``path`` (a demo's own subdirectory) when it holds something else: a user's
    ``OUT/raw`` of real files would otherwise be deleted. A demo killed while writing it left it aside, and
    it is put back first (``recover_replaced``), so the check sees the last complete one."""
    recover_replaced(path, flag="--out")
    if path.is_dir() and any(path.iterdir()) and not any((path / marker).exists() for marker in markers):
        raise RetailSimError(f"--out: {path} exists and is not {what} a demo wrote (no {' or '.join(markers)}); "
                             "it is left as it is: choose another --out")  # fmt: skip


def _train_and_report(run: Path, report_dir: Path, config: DemoConfig, progress: bool) -> dict:
    from agents.evaluate import evaluate_run, format_report
    from agents.train import PPOTrainConfig, train_ppo

    train_config = PPOTrainConfig(env_kwargs={"propensities": "fixed", "products": config.products},
                                  timesteps=config.timesteps, seed=config.seed, progress=progress)  # fmt: skip
    print(f"training PPO on RetailSim-v0 (default scenario, {config.products} products, {config.timesteps:,} steps) ...")
    summary = train_ppo(train_config, run)
    print(f"  {summary['timesteps']:,} steps in {summary['seconds']:.0f} s ({summary['steps_per_s']:.0f} steps/s)")
    print(f"evaluating PPO and the baselines, {config.episodes} episodes each, learned and oracle markets ...")
    report = evaluate_run(run, report_dir, episodes=config.episodes, progress=progress)
    for line in format_report(report).splitlines():
        print(f"  {line}")
    print(f"TensorBoard: tensorboard --logdir {run / 'tensorboard'}")
    print(f"report: {report_dir / 'report.json'}  plots: {', '.join(Path(p).name for p in report['plots'])}")
    return report
