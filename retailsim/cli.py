"""The ``retailsim`` command line: one entry point, a subcommand per pipeline stage.

User errors (:class:`world_model.errors.RetailSimError`) print one line and exit with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from world_model.errors import RetailSimError

EXIT_USER_ERROR = 2


class _OneLineWarnings(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"retailsim: {record.levelname.lower()}: {record.getMessage()}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


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
    from world_model.data.ingest import IngestConfig, ingest
    from world_model.pipeline.config import PipelineConfig
    from world_model.pipeline.runner import run_pipeline
    from world_model.pipeline.stages import ALL_STAGES

    source, workdir = Path(args.input), Path(args.out)
    if not (source / "ingest_report.json").exists():  # raw LGSR input: ingest it first
        ingested = workdir / "ingested"
        if not (ingested / "ingest_report.json").exists():
            ingest(source, ingested, IngestConfig(progress=not args.quiet))
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from retailsim.demo import run_demo

    run_demo(Path(args.out), progress=not args.quiet)
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
        "demo", help="run the main job on the embedded default", description="Generate a small synthetic market, "
        "ingest it and print the ingest report and the calibration facts."
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)

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
    ingest.set_defaults(func=_cmd_data_ingest)

    generate = data_commands.add_parser(
        "generate",
        help="write a synthetic market with known truth in the LGSR layout",
        description="Generate weekly LGSR-layout files (layout 'seg'), time.csv and DIR/ground_truth/ from a "
        "structural market model. Same seed, same bytes.",
    )
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--customers", type=_positive_int, default=5000)
    generate.add_argument("--products", type=_positive_int, default=5000)
    generate.add_argument("--stores", type=_positive_int, default=760)
    generate.add_argument("--weeks", type=_positive_int, default=94)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--format", choices=["csv", "parquet"], default="csv")
    generate.add_argument("--dirty", type=_rate, default=0.0, help="share of rows given a defect (default 0)")
    generate.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    generate.add_argument("--quiet", action="store_true", help="no progress bars")
    generate.set_defaults(func=_cmd_data_generate)

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
    run.set_defaults(func=_cmd_pipeline_run)
    return parser


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
        print("retailsim: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
