"""Read a training run's TensorBoard curves without TensorBoard's UI and plot them.

    python examples/read_tensorboard.py RUN_DIR [--out curves.png]

RUN_DIR is a directory written by ``retailsim agents train`` (or ``retailsim demo``'s ``ppo/``) or
``retailsim agents train-multi``; or run ``tensorboard --logdir RUN_DIR/tensorboard`` for the UI.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run_dir")
parser.add_argument("--out", default="curves.png")
args = parser.parse_args()

files = sorted(Path(args.run_dir, "tensorboard").rglob("events.out.tfevents.*"))
if not files:
    raise SystemExit(f"{args.run_dir}: no TensorBoard event files under tensorboard/")
accumulator = EventAccumulator(str(files[-1]))
accumulator.Reload()
tags = [t for t in accumulator.Tags()["scalars"] if t.startswith("charts/episodic")]
figure, axes = plt.subplots(len(tags), 1, figsize=(7, 2.5 * len(tags)), squeeze=False)
for axis, tag in zip(axes[:, 0], tags):
    events = accumulator.Scalars(tag)
    axis.plot([e.step for e in events], [e.value for e in events])
    axis.set_title(tag)
    print(f"{tag}: first {events[0].value:.2f}, last {events[-1].value:.2f} over {len(events)} points")
axes[-1, 0].set_xlabel("environment steps")
figure.tight_layout()
figure.savefig(args.out)
print(f"plot: {args.out}")
