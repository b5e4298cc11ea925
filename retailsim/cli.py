"""The ``retailsim`` command line: one entry point, a subcommand per pipeline stage.

User errors (:class:`world_model.errors.RetailSimError`) print one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from world_model.errors import RetailSimError, check_output_dir
from world_model.files import json_safe, recover_replaced, replacing, write_text_atomic

EXIT_USER_ERROR = 2

# What Ctrl-C leaves, said by the commands it applies to (the others: nothing is promised).
RESUMES = "rerun the same command to resume"
RESUMES_WITH_FLAG = "rerun with --resume to continue from OUT/last.pt"
KEEPS_PREVIOUS = "nothing of this run was kept; a previous one in --out is as it was"


class _OneLineWarnings(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"retailsim: {record.levelname.lower()}: {record.getMessage()}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


# argparse names a type by its __name__ when the text does not parse ("invalid positive integer value: 'x'")
_positive_int.__name__, _non_negative_int.__name__, _rate.__name__ = "positive integer", "non-negative integer", "rate"


def _bounded_float(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a float in [low, high] (``low_open``: (low, high]), refused with the range."""
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"

    def parse(text: str) -> float:
        value = float(text)
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


# ------------------------------------------------------------------------------------------ data


def _cmd_data_ingest(args: argparse.Namespace) -> int:
    from world_model.data.ingest import IngestConfig, ingest, iter_report_lines

    config = IngestConfig(
        calendar=args.calendar,
        overwrite=args.overwrite,
        memory_limit=args.memory_limit,
        threads=args.threads,
        progress=not args.quiet,
    )
    report = ingest(args.input, args.out, config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for line in iter_report_lines(report):
            print(line)
        print(f"report: {Path(args.out) / 'ingest_report.json'}")
    if not report["rows_accepted"]:  # written and reported, but nothing downstream can use it
        raise RetailSimError(f"{args.input}: no row accepted; every row's reason is in "
                             f"{Path(args.out) / 'quarantine.parquet'}")  # fmt: skip
    return 0


def _cmd_data_generate(args: argparse.Namespace) -> int:
    from world_model.data.synthetic import MarketConfig, generate_market

    config = MarketConfig(
        customers=args.customers, products=args.products, stores=args.stores, weeks=args.weeks, seed=args.seed
    )
    summary = generate_market(
        config, Path(args.out), fmt=args.format, dirty_rate=args.dirty, progress=not args.quiet, overwrite=args.overwrite
    )
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_data_facts(args: argparse.Namespace) -> int:
    from world_model.data.facts import compute_facts, format_facts

    facts = compute_facts(args.ingested)
    print(json.dumps(facts, indent=2) if args.json else format_facts(facts))
    return 0


def _split(text: str) -> tuple[int, int]:
    try:
        train_end, valid_end = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRAIN_END,VALID_END (e.g. 80,95), got {text}") from None
    if not 1 <= train_end < valid_end:
        raise argparse.ArgumentTypeError(f"need 1 <= TRAIN_END < VALID_END, got {text}")
    return train_end, valid_end


def _cmd_pipeline_run(args: argparse.Namespace) -> int:
    from world_model.data.ingest import IngestConfig, ingest, ingest_is_current
    from world_model.pipeline.config import PipelineConfig
    from world_model.pipeline.runner import run_pipeline
    from world_model.pipeline.stages import ALL_STAGES

    source, workdir = Path(args.input), Path(args.out)
    if not (source / "ingest_report.json").exists():  # raw LGSR input: ingest it first (again, if it changed)
        ingested = workdir / "ingested"
        if not ingest_is_current(source, ingested):
            ingest(source, ingested, IngestConfig(progress=not args.quiet, overwrite=True))
        source = ingested
    train_end, valid_end = args.split
    config = PipelineConfig(train_end=train_end, valid_end=valid_end, memory_limit=args.memory_limit, progress=not args.quiet)
    report = run_pipeline(source, workdir, ALL_STAGES, config, only=args.stages.split(",") if args.stages else None)
    for name, stage in report["stages"].items():
        state = "skipped (up to date)" if stage["skipped"] else f"{stage['seconds']:.1f} s, peak {stage['peak_rss_mb']:.0f} MB"
        outputs = ", ".join(f"{k} {v:,}" for k, v in stage["outputs"].items() if isinstance(v, int))
        print(f"{name:<18} {state:<28} {outputs}")
    print(f"report: {workdir / 'pipeline_report.json'}")
    return 0


# ------------------------------------------------------------------------------------------ train / evaluate


def _train_config(args: argparse.Namespace):
    from world_model.training.config import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, patience=args.patience,
                       amp=args.amp, device=args.device, progress=not args.quiet,
                       max_steps_per_epoch=args.max_steps_per_epoch, min_lr_ratio=args.min_lr_ratio)  # fmt: skip


def _print_training(summary: dict, out: Path) -> None:
    """The run's result, printed by torchrun's rank 0 only (every rank returns the same summary)."""
    from world_model.training.distributed import distributed_context

    if not distributed_context().is_main:
        return
    best = summary.get("best_value")
    print(f"epochs run: {summary.get('epochs_run')}, best {summary.get('monitor')} = "
          f"{'n/a' if best is None else f'{best:.4f}'} (epoch {summary.get('best_epoch')})"
          f"{', stopped early' if summary.get('stopped_early') else ''}")  # fmt: skip
    print(f"checkpoints: {out} (best.pt, last.pt); TensorBoard: tensorboard --logdir {out / 'tensorboard'}")


def _cmd_train_store_visit(args: argparse.Namespace) -> int:
    from world_model.models.store_visit import StoreVisitConfig
    from world_model.pipeline.loader import PreparedData
    from world_model.training.tasks import StoreVisitTask, StoreVisitTaskConfig
    from world_model.training.trainer import train

    data = PreparedData(args.workdir)
    config = StoreVisitConfig(n_stores=data.n_stores, label_smoothing=args.label_smoothing,
                              class_weight_power=args.class_weight_power)  # fmt: skip
    task = StoreVisitTask(data, config, StoreVisitTaskConfig(batch_size=args.batch_size, seed=args.seed))
    summary = train(task, _train_config(args), Path(args.out), resume=args.resume)
    _print_training(summary, Path(args.out))
    return 0


def _cmd_train_world_model(args: argparse.Namespace) -> int:
    from world_model.models.basket import BasketModelConfig
    from world_model.pipeline.loader import PreparedData
    from world_model.training.tasks import BasketTask, BasketTaskConfig, trip_classes
    from world_model.training.trainer import train

    data = PreparedData(args.workdir)
    sizes = BasketModelConfig.full if args.size == "full" else BasketModelConfig.small
    config = sizes(n_products=data.n_products, trip_classes=trip_classes(data), objective=args.objective.replace("-", "_"),
                   context_position=args.context_position)  # fmt: skip
    task_config = BasketTaskConfig(batch_size=args.batch_size, seed=args.seed, sampled_negatives=args.sampled_negatives)
    task = BasketTask(data, config, task_config, epochs=args.epochs)
    summary = train(task, _train_config(args), Path(args.out), resume=args.resume)
    _print_training(summary, Path(args.out))
    return 0


def _check_output_file(out: str, flag: str = "--out") -> None:
    """Refuse, before any work, an output file path that cannot be written as one: empty, a directory, or
    under a path that is a file (these failed at the final write, after the whole evaluation)."""
    path = Path(out)
    if not out or path.name in ("", ".", ".."):
        raise RetailSimError(f"{flag}: {out!r} is not a file name")
    if path.is_dir():
        raise RetailSimError(f"{flag}: {out} is a directory; name the file to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise RetailSimError(f"{flag}: {parent} is a file, so {out} cannot be written")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from world_model.evaluation.baselines import next_basket_baselines, store_baselines
    from world_model.evaluation.report import evaluate, write_metrics
    from world_model.evaluation.targets import EvaluationTargets
    from world_model.models.predictors import BasketRanker, StoreVisitPredictor, load_world_model
    from world_model.pipeline.loader import PreparedData

    _check_output_file(args.out)
    data = PreparedData(args.workdir)
    rankers, predictors = next_basket_baselines(data), store_baselines(data)
    store_model = None
    if args.store_visit:
        store_model = StoreVisitPredictor(load_world_model(args.store_visit, data, args.device, kind="store_visit"), data)
        predictors.append(store_model)
    basket_rankers = []
    if args.world_model:
        model = load_world_model(args.world_model, data, args.device, kind="basket")
        # what the simulator knows: the predicted store (the primary store without a store model) and the
        # customer's usual trip mix; then, labelled as such, the target's own store and trip attributes
        deployable_store = store_model or next(p for p in predictors if p.name == "primary_store")
        basket_rankers = [BasketRanker(model, data, store=deployable_store, trip="patterns", name="world_model"),
                          BasketRanker(model, data, store="true", trip="true", name="world_model_true_context")]  # fmt: skip
        rankers += basket_rankers
    metrics = evaluate(data, args.split, rankers, predictors, limit=args.limit)
    if not metrics["targets/count"]:  # every metric null, written as if measured
        raise RetailSimError(f"--split {args.split}: {args.workdir} has no {args.split} targets (baskets of 2+ products "
                             "of customers seen before); rerun 'retailsim pipeline run' with another --split")  # fmt: skip
    if basket_rankers:
        targets = EvaluationTargets.from_prepared(data, args.split, limit=args.limit)
        for ranker in basket_rankers:
            for head, accuracy in ranker.trip_head_accuracy(targets).items():
                metrics[f"trip_heads/{ranker.name}/{head}/accuracy"] = accuracy
    write_metrics(metrics, args.out)
    print(f"{int(metrics['targets/count']):,} {args.split} targets")
    for key in sorted(metrics):
        if key.startswith("next_basket/") and key.endswith(("/recall@10", "/ndcg@10")) or \
                key.startswith("store_visit/") and key.endswith(("/top1", "/mrr")):  # fmt: skip
            print(f"{key:<48} {metrics[key]:.4f}")
    print(f"metrics: {args.out}")
    return 0


def _demand_simulator(args: argparse.Namespace, data=None):
    """The simulator of ``evaluate-response`` and ``whatif``: models, response, the split's trips (over
    ``data``, the work directory's ``PreparedData`` when the caller has it already)."""
    from world_model.models.predictors import StoreVisitPredictor, load_world_model
    from world_model.pipeline.loader import PreparedData
    from world_model.response.model import PriceResponse
    from world_model.response.simulate import DemandSimulator

    data = PreparedData(args.workdir) if data is None else data
    response = PriceResponse.load(Path(args.workdir))
    basket = load_world_model(args.world_model, data, args.device, kind="basket")
    store = StoreVisitPredictor(load_world_model(args.store_visit, data, args.device, kind="store_visit"), data)
    split = args.split or ("test" if _has_trips(data, "test") else "validation")
    return DemandSimulator(data, basket, store, response, split=split, limit=args.limit)


def _has_trips(data, split: str) -> bool:
    from world_model.evaluation.targets import EvaluationTargets

    return len(EvaluationTargets.from_prepared(data, split, min_products=1)) > 0


def _cmd_evaluate_response(args: argparse.Namespace) -> int:
    from world_model.data.synthetic.truth import check_truth_matches
    from world_model.pipeline.loader import PreparedData
    from world_model.response.checks import evaluate_response
    from world_model.response.plots import plot_response

    _check_output_file(args.out)
    if args.ground_truth and not (Path(args.ground_truth) / "categories.parquet").exists():
        raise RetailSimError(f"--ground-truth: {args.ground_truth} has no categories.parquet (a generated market's ground_truth/)")
    data = PreparedData(args.workdir)
    if args.ground_truth:  # another market's truth crashed, or scored the estimates against the wrong parameters
        check_truth_matches(Path(args.ground_truth), data)
    simulator = _demand_simulator(args, data)
    report = evaluate_response(simulator, Path(args.ground_truth) if args.ground_truth else None, args.store)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a report found there is of the plot beside it
    figure = plot_response(report, out.with_suffix(".png"))
    write_text_atomic(out, json.dumps(json_safe(report), indent=1, default=float) + "\n")
    ident = report["identifiability"]
    print(f"{ident['categories']} categories, {ident['estimated']} estimated, "
          f"{ident['elasticity_data_weight_over_half']} with elasticity data weight > 0.5")  # fmt: skip
    if "recovery" in report:
        errors = report["recovery"]["median_abs_rel_error"]
        print(f"median abs rel error: elasticity {errors['elasticity_estimate']:.1%} (prior alone "
              f"{errors['elasticity_prior_only']:.1%}), lift {errors['lift_estimate']:.1%} (prior alone {errors['lift_prior_only']:.1%})")  # fmt: skip
    placebo = report["placebo"]["fake_promotion"]
    store, checks = next(iter(report["stores"].items()))
    print(f"placebo, fake promotion flag: demand change {placebo['demand_change']:+.2%} "
          f"({'pass' if placebo['passed'] else 'FAIL'})")  # fmt: skip
    print(f"placebo, unchanged prices at {store}: demand change {checks['unchanged_prices']['total_demand_change']:+.2%} "
          f"({'pass' if checks['unchanged_prices']['passed'] else 'FAIL'})")  # fmt: skip
    mono = checks["monotonicity"]
    print(f"monotonicity at {store}: {mono['products']} products, {mono['violations']} violations "
          f"({'pass' if mono['passed'] else 'FAIL'})")  # fmt: skip
    print(f"report: {out}\nplot:   {figure}")
    return 0 if report["checks_passed"] else 1


def _cmd_whatif(args: argparse.Namespace) -> int:
    from world_model.response.whatif import format_whatif, parse_moves, run_whatif

    if not args.set and not args.promo:
        raise RetailSimError("whatif: give at least one --set or --promo")
    simulator = _demand_simulator(args)
    prices = parse_moves(args.set or [], "--set", simulator)
    promos = parse_moves(args.promo or [], "--promo", simulator)
    table = run_whatif(simulator, args.store, prices, promos, weeks=args.weeks, margin=args.margin,
                       from_week=args.from_week)  # fmt: skip
    print(format_whatif(table, args.weeks, args.from_week))
    return 0


def _cmd_scenario_build(args: argparse.Namespace) -> int:
    from retailsim_env.scenario import BuildConfig, Scenario, build_scenario

    out = build_scenario(args.workdir, args.world_model, args.store_visit, args.out, ground_truth=args.ground_truth,
                         config=BuildConfig(name=args.name or Path(args.out).name, cost_ratio=args.cost_ratio),
                         overwrite=args.overwrite)  # fmt: skip
    scenario = Scenario(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"scenario {scenario.name}: {len(scenario.catalog)} products, {len(scenario.stores)} stores, "
          f"{len(scenario.shoppers)} shoppers, ground truth: {'yes' if scenario.has_ground_truth else 'no'}, "
          f"{size / 2**20:.1f} MiB")  # fmt: skip
    print(f"written: {out}  (gym.make('RetailSim-v0', scenario='{out}'))")
    return 0


def _cmd_bench_env(args: argparse.Namespace) -> int:
    from retailsim_env.bench import EnvBenchConfig, bench_env

    config = EnvBenchConfig(scenario=args.scenario, num_envs=args.num_envs, steps=args.steps, warmup=args.warmup,
                            products=args.products, n_stores=args.n_stores, device=args.device,
                            propensities=args.propensities, pipeline_groups=args.pipeline_groups)  # fmt: skip
    print(json.dumps(bench_env(config), indent=1))
    return 0


def _env_kwargs(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RetailSimError(f"--env-kwargs: not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(value, dict):
        raise RetailSimError("--env-kwargs: must be a JSON object of RetailSim-v0 keyword arguments")
    return value


def _train_run(train: Callable[..., dict], config, out: str, overwrite: bool) -> dict:
    """``train(config, out)``, its bad env keyword arguments reported as ``--env-kwargs``. Nothing is left
    half-written: a non-empty ``out`` is refused unless ``overwrite``; then the old run is replaced only
    when the new one is complete (``world_model.files.replacing``)."""
    from agents.envargs import EnvKwargsError

    out_dir = Path(out)
    recover_replaced(out_dir, flag="--out")  # a run killed mid-way left the previous one aside
    check_output_dir(out_dir, overwrite, flag="--out")
    try:
        with replacing([out_dir], flag="--out"):
            return train(config, out)
    except EnvKwargsError as error:
        raise RetailSimError(f"--env-kwargs: {error.detail}") from None


def _cmd_agents_train(args: argparse.Namespace) -> int:
    from agents.train import PPOTrainConfig, train_ppo

    if args.env != "RetailSim-v0" or args.algo != "ppo":
        raise RetailSimError(f"--env/--algo: only RetailSim-v0 with ppo is available, got {args.env} / {args.algo}")
    defaults = PPOTrainConfig()
    try:
        config = PPOTrainConfig(env_kwargs={**defaults.env_kwargs, **_env_kwargs(args.env_kwargs)}, timesteps=args.timesteps,
                                num_envs=args.num_envs, n_steps=args.n_steps, batch_size=min(args.batch_size, args.num_envs * args.n_steps),
                                seed=args.seed, checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                                **_ppo_overrides(args))  # fmt: skip
    except ValueError as error:  # the options' combination (each alone is checked by the parser)
        raise RetailSimError(f"--batch-size / --num-envs / --n-steps: {error}") from None
    summary = _train_run(train_ppo, config, args.out, args.overwrite)
    print(f"trained {summary['timesteps']:,} steps in {summary['seconds']:.0f} s ({summary['steps_per_s']:.0f} steps/s)")
    print(f"run: {args.out}  (TensorBoard: tensorboard --logdir {summary['tensorboard']})")
    return 0


def _cmd_agents_train_multi(args: argparse.Namespace) -> int:
    from agents.multi import MultiAgentTrainConfig, train_multi

    defaults = MultiAgentTrainConfig()
    config = MultiAgentTrainConfig(mode=args.mode, env_kwargs={**defaults.env_kwargs, **_env_kwargs(args.env_kwargs)},
                                   timesteps=args.timesteps, num_envs=args.num_envs, n_steps=args.n_steps,
                                   sharing=args.sharing, seed=args.seed, progress=not args.quiet,
                                   **_ppo_overrides(args))  # fmt: skip
    summary = _train_run(train_multi, config, args.out, args.overwrite)
    for agent, result in summary["agents"].items():
        if result["first_return"] is None:
            print(f"  {agent:<20} fewer than 2 episodes: no return trend")
        else:
            print(f"  {agent:<20} return {result['first_return']:.2f} (first episodes) -> {result['last_return']:.2f} (last)")
    print(f"run: {args.out}  (TensorBoard: tensorboard --logdir {Path(args.out) / 'tensorboard'})")
    return 0


def _cmd_agents_evaluate(args: argparse.Namespace) -> int:
    run = Path(args.run_dir)
    check_output_dir(Path(args.out), overwrite=True, flag="--out")  # a file, not a report directory
    recover_replaced(run)  # a training killed while replacing this run: its previous one is the run (a warning says so)
    if (run / "policies.pt").exists():
        from agents.multi import evaluate_multi_run

        report = evaluate_multi_run(run, args.out, episodes=args.episodes, seed=args.seed, progress=not args.quiet)
        for mode, agents in report["modes"].items():
            print(f"{mode} market:")
            for agent, r in agents.items():
                print(f"  {agent:<20} return {r['trained']['return']:.2f} vs historical {r['historical']['return']:.2f}, "
                      f"profit {r['trained']['profit']:.1f} vs {r['historical']['profit']:.1f} "
                      f"({r['profit_lift_vs_historical']:+.1%}; untrained: return {r['untrained']['return']:.2f}, "
                      f"{r['untrained_profit_lift_vs_historical']:+.1%})")  # fmt: skip
                for policy in ("trained", "untrained", "historical"):
                    parts = ", ".join(f"{term} {value:+.2f}" for term, value in r[policy]["return_terms"].items())
                    print(f"    {policy:<11} return terms: {parts}")
    elif (run / "model.zip").exists():
        from agents.evaluate import evaluate_run, format_report

        report = evaluate_run(run, args.out, episodes=args.episodes, seed=args.seed, progress=not args.quiet)
        print(format_report(report))
    else:
        raise RetailSimError(f"{run}: not a training run (no model.zip or policies.pt)")
    print(f"report: {Path(args.out) / 'report.json'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from retailsim.demo import DemoConfig, run_demo

    run_demo(Path(args.out), DemoConfig(timesteps=args.timesteps, episodes=args.episodes), progress=not args.quiet)
    return 0


def _cmd_data_demo(args: argparse.Namespace) -> int:
    from retailsim.demo import run_data_demo

    run_data_demo(Path(args.out), progress=not args.quiet)
    return 0


# ------------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retailsim",
        description="RetailSim: a flight simulator for retail decisions (data, world models, environments, agents).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo", help="run the main job on the embedded default", description="Train PPO on RetailSim-v0 over "
        "the shipped default scenario, evaluate it against the baselines in the learned and the oracle market, "
        "and write the TensorBoard run, report.json and plots.",
    )  # fmt: skip
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--timesteps", type=_positive_int, default=500_000, help="PPO steps (default 500,000)")
    demo.add_argument("--episodes", type=_positive_int, default=8, help="evaluation episodes (default 8)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo, interrupted=KEEPS_PREVIOUS)

    data = commands.add_parser("data", help="ingest, generate and inspect LGSR transaction data")
    data_commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    ingest = data_commands.add_parser(
        "ingest",
        help="raw LGSR files -> canonical parquet by week, quarantine and report",
        description="Ingest LGSR transaction files (csv, csv.gz, parquet; layouts 'seg' and 'cust'). Every row is "
        "accepted or quarantined with a reason; the report is DIR/ingest_report.json. Rerunning after a "
        "crash resumes.",
    )
    ingest.add_argument("input", help="a file, a directory or a quoted glob of transactions_YYYYWW files")
    ingest.add_argument("--out", required=True, help="output directory")
    ingest.add_argument("--calendar", type=Path, help="time.csv (default: time.csv beside the input, else inferred)")
    ingest.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    ingest.add_argument("--memory-limit", default="2GB", help="DuckDB memory limit (default 2GB)")
    ingest.add_argument("--threads", type=_positive_int, help="DuckDB threads (default: all cores)")
    ingest.add_argument("--json", action="store_true", help="print the whole report as JSON")
    ingest.add_argument("--quiet", action="store_true", help="no progress bars")
    ingest.set_defaults(func=_cmd_data_ingest, interrupted=RESUMES)

    generate = data_commands.add_parser(
        "generate",
        help="write a synthetic market with known truth in the LGSR layout",
        description="Generate weekly LGSR-layout files (layout 'seg'), time.csv and DIR/ground_truth/ from a "
        "structural market model. Same seed, same bytes.",
    )
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--customers", type=_positive_int, default=5000, help="customers (default: %(default)s)")
    generate.add_argument("--products", type=_positive_int, default=5000, help="products (default: %(default)s)")
    generate.add_argument("--stores", type=_positive_int, default=760, help="stores (default: %(default)s)")
    generate.add_argument("--weeks", type=_positive_int, default=94, help="weeks of transactions (default: %(default)s)")
    generate.add_argument("--seed", type=_non_negative_int, default=0, help="generator seed (default: %(default)s)")
    generate.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format (default: %(default)s)")
    generate.add_argument("--dirty", type=_rate, default=0.0, help="share of rows given a defect (default 0)")
    generate.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    generate.add_argument("--quiet", action="store_true", help="no progress bars")
    generate.set_defaults(func=_cmd_data_generate)

    data_demo = data_commands.add_parser(
        "demo", help="generate, ingest and summarize a small synthetic market",
        description="Generate a small synthetic market, ingest it and print the ingest report and the calibration facts.",
    )  # fmt: skip
    data_demo.add_argument("--out", default="runs/data-demo", help="output directory (default: runs/data-demo)")
    data_demo.add_argument("--quiet", action="store_true", help="no progress bars")
    data_demo.set_defaults(func=_cmd_data_demo)

    facts = data_commands.add_parser(
        "facts",
        help="calibration facts of an ingested dataset",
        description="Compute the facts the synthetic market is calibrated against (basket sizes, spend, loyalty, "
        "repeat purchases, ...) from an ingested directory.",
    )
    facts.add_argument("ingested", help="directory written by 'retailsim data ingest'")
    facts.add_argument("--json", action="store_true", help="print JSON")
    facts.set_defaults(func=_cmd_data_facts)

    pipeline = commands.add_parser("pipeline", help="the data-to-training pipeline")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", metavar="PIPELINE_COMMAND", required=True)
    run = pipeline_commands.add_parser(
        "run",
        help="ingested (or raw) transactions -> processed/, features/, prepared/",
        description="Run the pipeline's stages in order. Finished stages whose inputs and parameters are "
        "unchanged are skipped, so rerunning after a crash resumes. Everything fitted uses the training weeks only.",
    )
    run.add_argument("input", help="a directory written by 'retailsim data ingest', or raw LGSR input to ingest first")
    run.add_argument("--out", required=True, help="work directory")
    run.add_argument("--stages", help="comma-separated stages to run (with what they need); default: all")
    run.add_argument("--split", type=_split, default=(80, 95), help="TRAIN_END,VALID_END week indices (default 80,95)")
    run.add_argument("--memory-limit", default="4GB", help="DuckDB memory limit (default 4GB)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_pipeline_run, interrupted=RESUMES)
    _add_train_commands(commands)
    return parser


def _add_training_options(command: argparse.ArgumentParser, batch_size: int, lr: float, epochs: int) -> None:
    command.add_argument("workdir", help="work directory written by 'retailsim pipeline run'")
    command.add_argument("--out", required=True, help="checkpoint directory (best.pt, last.pt, epoch-NNN.pt, tensorboard/)")
    command.add_argument("--epochs", type=_positive_int, default=epochs, help=f"at most this many epochs (default {epochs})")
    command.add_argument("--batch-size", type=_positive_int, default=batch_size, help=f"per process (default {batch_size})")
    command.add_argument("--lr", type=_bounded_float(0.0, 10.0, low_open=True), default=lr,
                         help=f"peak learning rate (default {lr})")
    command.add_argument("--min-lr-ratio", type=_rate, default=0.1,
                         help="the cosine schedule ends at this share of --lr (default %(default)s)")
    command.add_argument("--patience", type=_non_negative_int, default=3, help="early stopping patience in epochs (0: off)")
    command.add_argument("--seed", type=_non_negative_int, default=0)
    command.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                         help="mixed precision (auto: bf16 on CUDA, off on CPU)")
    command.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    command.add_argument("--max-steps-per-epoch", type=_positive_int, help="cap steps per epoch (smoke runs)")
    command.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    command.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_train_commands(commands) -> None:
    train = commands.add_parser("train", help="train the world models (torchrun for several processes)")
    train_commands = train.add_subparsers(dest="train_command", metavar="TRAIN_COMMAND", required=True)
    store_visit = train_commands.add_parser(
        "store-visit", help="the store-visit predictor",
        description="Train P(next store | customer, time, previous store and basket, visit history). Multi-process: "
        "torchrun --nproc_per_node N -m retailsim.cli train store-visit ...",
    )  # fmt: skip
    _add_training_options(store_visit, batch_size=512, lr=2e-3, epochs=4)
    store_visit.add_argument("--label-smoothing", type=_rate, default=0.1, help="of the cross-entropy (default 0.1)")
    store_visit.add_argument("--class-weight-power", type=_bounded_float(0.0, 10.0), default=0.0,
                             help="class weight = (training trips of the store + 1)^-POWER (default 0: unweighted)")
    store_visit.set_defaults(func=_cmd_train_store_visit, interrupted=RESUMES_WITH_FLAG)
    world_model = train_commands.add_parser(
        "world-model", help="the basket world model (Mamba encoder + Transformer decoder)",
        description="Train the basket model with the next-basket (the simulator's) or the masked-basket objective. "
        "Multi-process: torchrun --nproc_per_node N -m retailsim.cli train world-model ...",
    )  # fmt: skip
    _add_training_options(world_model, batch_size=256, lr=2e-3, epochs=6)
    world_model.add_argument("--objective", choices=["next-basket", "masked"], default="next-basket")
    world_model.add_argument("--size", choices=["small", "full"], default="small",
                             help="small: trains on a CPU; full: the design's d=512 (a GPU)")
    world_model.add_argument("--context-position", choices=["decoder", "encoder"], default="decoder",
                             help="where the trip's context enters: decoder (after the encoder, so the simulator "
                             "encodes each history once) or encoder (it leads the Mamba sequence; the first layout)")  # fmt: skip
    world_model.add_argument("--sampled-negatives", type=_positive_int,
                             help="next basket: sampled softmax with this many drawn negatives (default: full softmax)")
    world_model.set_defaults(func=_cmd_train_world_model, interrupted=RESUMES_WITH_FLAG)

    evaluate = commands.add_parser(
        "evaluate", help="next-basket and store-visit metrics of the world models and the baselines",
        description="Score the split's targets (baskets with >= 2 products of customers with an earlier basket) "
        "with every baseline and, when given, the trained models, side by side; write metrics.json.",
    )  # fmt: skip
    evaluate.add_argument("workdir", help="work directory written by 'retailsim pipeline run'")
    evaluate.add_argument("--world-model", help="basket model checkpoint (a file or a training --out directory)")
    evaluate.add_argument("--store-visit", help="store-visit checkpoint (a file or a training --out directory)")
    evaluate.add_argument("--split", choices=["train", "validation", "test"], default="test")
    evaluate.add_argument("--out", required=True, help="metrics JSON file")
    evaluate.add_argument("--limit", type=_positive_int, help="evaluate a random sample of this many targets")
    evaluate.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    evaluate.set_defaults(func=_cmd_evaluate)
    _add_response_commands(commands)
    _add_environment_commands(commands)
    _add_agent_commands(commands)


def _add_environment_commands(commands) -> None:
    scenario = commands.add_parser("scenario", help="scenario bundles for the environments")
    scenario_commands = scenario.add_subparsers(dest="scenario_command", metavar="COMMAND", required=True)
    build = scenario_commands.add_parser(
        "build", help="bundle a work directory and its trained models into a scenario",
        description="Write SCENARIO_DIR with the catalog (prices, bounds, costs), stores, shopper population, "
        "the trained models, the price response and scenario.json (versions and hashes).",
    )  # fmt: skip
    _add_model_inputs(build)
    build.add_argument("--out", required=True, help="scenario directory to write")
    build.add_argument("--ground-truth", help="a generated market's ground_truth/ (true costs and the oracle mode)")
    build.add_argument("--name", help="scenario name (default: the --out directory's name)")
    build.add_argument("--cost-ratio", type=float, default=0.7,
                       help="unit cost / reference price where no ground truth gives costs (default 0.7)")
    build.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (once the new one is complete)")
    build.set_defaults(func=_cmd_scenario_build)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", metavar="COMMAND", required=True)
    env = bench_commands.add_parser(
        "env", help="steps/s and shopper-visits/s of the single and vector environment",
        description="Print JSON: steps/s and shopper-visits/s of RetailSim-v0 and of the vector environment, "
        "the ratio of a vector step's time to the bare basket-model forward on the same batch, and the step's "
        "time beyond its forward per visit (the host's ceiling on visits/s).",
    )  # fmt: skip
    env.add_argument("--scenario", help="scenario directory (default: the shipped one)")
    env.add_argument("--num-envs", type=_positive_int, default=8, help="vector copies (default 8)")
    env.add_argument("--steps", type=_positive_int, default=10, help="timed steps (default 10)")
    env.add_argument("--warmup", type=_non_negative_int, default=2, help="untimed steps first (default 2)")
    env.add_argument("--products", type=_positive_int, default=10, help="managed products (default 10)")
    env.add_argument("--n-stores", type=_positive_int, default=1, help="managed stores (default 1)")
    env.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")
    env.add_argument("--propensities", choices=["weekly", "fixed"], default="weekly",
                     help="weekly: the basket model runs every step (default); fixed: once, at build")
    env.add_argument("--pipeline-groups", type=_positive_int, default=None,
                     help="copy groups of a weekly vector step (default: 2 on CUDA, 1 on a CPU); above 1 the "
                     "report adds the same steps with one group, side by side")  # fmt: skip
    env.set_defaults(func=_cmd_bench_env)


def _add_model_inputs(command: argparse.ArgumentParser) -> None:
    """A work directory and its two trained models (the simulator's and the scenario builder's inputs)."""
    command.add_argument("workdir", help="work directory written by 'retailsim pipeline run'")
    command.add_argument("--world-model", required=True, help="basket model checkpoint (file or training --out directory)")
    command.add_argument("--store-visit", required=True, help="store-visit checkpoint (file or training --out directory)")


PPO_OPTIONS = (("--learning-rate", _bounded_float(0.0, 1.0, low_open=True), 3e-4, "Adam's step size"),
               ("--gamma", _bounded_float(0.0, 1.0), 0.99, "discount per weekly step"),
               ("--gae-lambda", _bounded_float(0.0, 1.0), 0.95, "GAE's bias-variance trade-off"),
               ("--clip-range", _bounded_float(0.0, 10.0, low_open=True), 0.2, "PPO's policy-ratio clip"),
               ("--ent-coef", _bounded_float(0.0, 10.0), 0.0, "entropy bonus weight"))  # fmt: skip
"""The PPO options both trainers share (flag, type, default, meaning); unset, a run keeps its config
class's default (``PPOTrainConfig``, ``MultiAgentTrainConfig``: the same values, checked by a test)."""


def _ppo_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The PPO options given on the command line, as config fields."""
    names = ("n_epochs", *(flag[2:].replace("-", "_") for flag, *_ in PPO_OPTIONS))
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _add_rl_options(command: argparse.ArgumentParser, env_name: str, timesteps: int, n_steps: int,
                    n_epochs: int) -> None:  # fmt: skip
    """The options every training command shares: env arguments, budget, batching, PPO's
    hyperparameters, seed, output."""
    command.add_argument("--env-kwargs", help=f'JSON keyword arguments of {env_name}, e.g. \'{{"products": 10}}\', '
                         'merged into the default {"propensities": "fixed"}')
    command.add_argument("--timesteps", type=_positive_int, default=timesteps,
                         help=f"environment steps (default {timesteps:,}), rounded up to whole rollouts of num-envs x n-steps")
    command.add_argument("--num-envs", type=_positive_int, default=8, help="copies stepped as one batch (default 8)")
    command.add_argument("--n-steps", type=_positive_int, default=n_steps, help=f"steps per copy per rollout (default {n_steps})")
    command.add_argument("--seed", type=_non_negative_int, default=0)
    ppo = command.add_argument_group("PPO hyperparameters")
    ppo.add_argument("--n-epochs", type=_positive_int, help=f"passes over each rollout (default {n_epochs})")
    for flag, kind, default, meaning in PPO_OPTIONS:
        ppo.add_argument(flag, type=kind, help=f"{meaning} (default {default:g})")
    command.add_argument("--out", required=True, help="run directory (must be empty unless --overwrite)")
    command.add_argument("--overwrite", action="store_true", help="replace the run in --out (kept if the new one fails)")
    command.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_agent_commands(commands) -> None:
    agents = commands.add_parser("agents", help="train and evaluate policies on the environments")
    agent_commands = agents.add_subparsers(dest="agents_command", metavar="COMMAND", required=True)
    train = agent_commands.add_parser(
        "train", help="Stable-Baselines3 PPO on the vector RetailSim-v0",
        description="Train PPO (VecNormalize statistics saved beside the model) with TensorBoard curves and "
        "checkpoints. --env-kwargs default: {\"propensities\": \"fixed\"} (the fast path on a CPU).",
    )  # fmt: skip
    train.add_argument("--env", default="RetailSim-v0")
    train.add_argument("--algo", default="ppo", choices=["ppo"])
    _add_rl_options(train, "the env", timesteps=200_000, n_steps=256, n_epochs=10)
    train.add_argument("--batch-size", type=_positive_int, default=256)
    train.add_argument("--checkpoint-every", type=_non_negative_int, default=0,
                       help="also save every N steps, rounded down to a multiple of --num-envs (default 0: only at the end)")
    train.set_defaults(func=_cmd_agents_train, interrupted=KEEPS_PREVIOUS)

    multi = agent_commands.add_parser(
        "train-multi", help="PPO for the PettingZoo agents (functions or competition)",
        description="Independent PPO per agent (or --sharing shared) on batched copies of the multi-agent market.",
    )  # fmt: skip
    multi.add_argument("--mode", choices=["functions", "competition"], required=True)
    _add_rl_options(multi, "parallel_env (but mode and render_mode)", timesteps=100_000, n_steps=128, n_epochs=5)
    multi.add_argument("--sharing", choices=["independent", "shared"], default="independent")
    multi.set_defaults(func=_cmd_agents_train_multi, interrupted=KEEPS_PREVIOUS)

    evaluate = agent_commands.add_parser(
        "evaluate", help="a trained run against the baselines, learned and oracle markets",
        description="For an 'agents train' run: write REPORT_DIR/report.json and PNG plots of the run's policy "
        "and the baselines: profit lift vs historical pricing, revenue variance, price violations, edge hugging, "
        "promotion share. For an 'agents train-multi' run: write REPORT_DIR/report.json, agent_returns.png and "
        "return_terms.png with each agent's return (term by term) and profit, trained, untrained (as the run started) "
        "and historical, and the profit lifts vs historical.",
    )  # fmt: skip
    evaluate.add_argument("run_dir", help="directory written by 'agents train' or 'agents train-multi'")
    evaluate.add_argument("--episodes", type=_positive_int, default=8)
    evaluate.add_argument("--seed", type=_non_negative_int, default=1000, help="episode i is seeded seed + i for every policy")
    evaluate.add_argument("--out", required=True, help="report directory")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=_cmd_agents_evaluate)


def _add_simulator_options(command: argparse.ArgumentParser) -> None:
    _add_model_inputs(command)
    command.add_argument("--split", choices=["train", "validation", "test"],
                         help="whose trips are the shopper population (default: test, or validation when test is empty)")
    command.add_argument("--limit", type=_positive_int, help="a random sample of this many trips")
    command.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, ...")


def _add_response_commands(commands) -> None:
    response = commands.add_parser(
        "evaluate-response", help="price/promotion response: recovery, identifiability, placebos, monotonicity",
        description="Report the fitted category elasticities and promotion lifts with their identifiability "
        "(against the truth with --ground-truth), run the placebo and monotonicity checks on the simulated "
        "demand and plot the demand curves. Exit 1 when a check fails.",
    )  # fmt: skip
    _add_simulator_options(response)
    response.add_argument("--ground-truth", help="a generated market's ground_truth/ directory")
    response.add_argument("--store", action="append", help="store(s) to simulate (default: the busiest)")
    response.add_argument("--out", required=True, help="report JSON file (the PNG goes beside it)")
    response.set_defaults(func=_cmd_evaluate_response)

    whatif = commands.add_parser(
        "whatif", help="simulated units, revenue and profit of a price or promotion change at one store",
        description="KEYS are product codes or categories (PROD_CODE_20), comma-separated. "
        "Example: retailsim whatif WORK --world-model WM --store-visit SV --store STORE00001 "
        "--set PRD0900001=+10% --promo DEP00003=20% --weeks 4",
    )  # fmt: skip
    _add_simulator_options(whatif)
    whatif.add_argument("--store", required=True, help="STORE_CODE")
    whatif.add_argument("--set", action="append", metavar="KEYS=CHANGE", help="price change, e.g. PRD0900001=+10%%")
    whatif.add_argument("--promo", action="append", metavar="KEYS=DEPTH", help="promotion at a depth, e.g. PRD0900001=20%%")
    whatif.add_argument("--weeks", type=_positive_int, default=1, help="weeks the change lasts (default 1)")
    whatif.add_argument("--from-week", type=_positive_int, default=None,
                        help="data week index the change starts at (past the data: the calendar goes on): units "
                        "follow the categories' season index over those weeks (default: an average training week, "
                        "no season)")  # fmt: skip
    whatif.add_argument("--margin", type=float, default=0.3, help="gross margin at reference price for costs (default 0.3)")
    whatif.set_defaults(func=_cmd_whatif)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineWarnings())
    logger = logging.getLogger("retailsim")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO if args.verbose else logging.WARNING)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except RetailSimError as exc:
        print(f"retailsim: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return _interrupted(args)
    except BrokenPipeError:
        if not _stdout_reader_gone():  # only a reader of our stdout that left (``| head``); a worker's is an error
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second one at the exit's flush
        return 141
    except PATH_ERRORS as exc:  # a path the user gave: unwritable, a file where a directory goes, ...
        if args.verbose or exc.filename is None:  # -v keeps the traceback, for a bug report
            raise
        paths = f"{exc.filename}{f' -> {exc.filename2}' if exc.filename2 else ''}"
        print(f"retailsim: error: {paths}: {exc.strerror} (rerun with -v for the trace)", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        import duckdb

        if isinstance(exc, duckdb.InterruptException) or (isinstance(exc, RuntimeError) and str(exc) == "Query interrupted"):
            return _interrupted(args)  # Ctrl-C inside a DuckDB query: DuckDB's exception, not KeyboardInterrupt
        if _unreadable_data_file(exc) and not args.verbose:
            detail = str(exc).splitlines()[0]  # e.g. a corrupt parquet part: "No magic bytes found at end of file"
            print(f"retailsim: error: a data file could not be read ({detail}); rerun with -v for the trace",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USER_ERROR
        raise


PATH_ERRORS = (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError, FileNotFoundError)
"""OSErrors about a path, reported as one line naming it (a ``-v`` run keeps the traceback)."""


def _unreadable_data_file(exc: Exception) -> bool:
    """A DuckDB error reading a file: an I/O error, or invalid input that names a file format (a
    ``ProgrammingError`` such as a parameter count mismatch is a bug, and keeps its traceback)."""
    import duckdb

    if isinstance(exc, duckdb.IOException):
        return True
    text = str(exc).lower()
    return isinstance(exc, duckdb.InvalidInputException) and any(word in text for word in ("parquet", "csv", "magic bytes"))


def _interrupted(args: argparse.Namespace) -> int:
    then = getattr(args, "interrupted", None)
    print(f"retailsim: interrupted{f'; {then}' if then else ''}", file=sys.stderr)
    return 130


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed: polling it for writing reports an error
    then (POSIX). A flush is no test: the failed write's bytes are already dropped, so it succeeds."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout without a descriptor
        return False


if __name__ == "__main__":
    sys.exit(main())
