"""Evaluate a checkpoint: `python -m <package>.evaluate --checkpoint PATH [--split val|test]
[--output FILE.json] [key=value ...]`.

The model and data are rebuilt from the checkpoint's own config (`key=value` changes it, e.g.
`data.root=/data/mnist`), and evaluated as training evaluated: `best.pt` gives the best
evaluation's logged val_loss and val_accuracy again. `--split test` uses the split that training
never saw (MNIST: the t10k files). Exit codes: 0 done, 2 a usage or config error, 1 a missing or
damaged checkpoint or dataset.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from .atomic_files import write_json
from .data import Split, build_split
from .data.loaders import make_loader
from .distributed import DistributedContext, resolve_device
from .errors import run_command
from .inference import load_trained_model
from .reproducibility import configure_determinism
from .trainer import autocast_dtype_for, evaluate_model


def evaluate_checkpoint(
    checkpoint: str | Path, split: Split, overrides: Sequence[str] = ()
) -> dict[str, float]:
    """`<split>_loss` and `<split>_accuracy` of the checkpoint's model on one split."""
    trained = load_trained_model(checkpoint, overrides)
    config, one_process = trained.config, DistributedContext()
    configure_determinism(config.train.deterministic, compiling=False)
    device = resolve_device(config.train.device, one_process)
    dataset = build_split(config.data, config.seed, split)
    loader, _ = make_loader(dataset, config, one_process, shuffle=False)
    loss, accuracy = evaluate_model(
        trained.model.to(device), loader, device, autocast_dtype_for(config.train.amp, device),
        one_process,
    )  # fmt: skip
    return {f"{split}_loss": loss, f"{split}_accuracy": accuracy}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on one split.")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="e.g. .../best.pt, model.safetensors, or s3://bucket/run/checkpoints/best.pt",
    )
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--output", type=Path, help="also write the metrics to this JSON file")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    arguments = parser.parse_args(argv)

    def evaluate() -> None:
        split = typing.cast(Split, arguments.split)
        metrics = evaluate_checkpoint(arguments.checkpoint, split, arguments.overrides)
        print(json.dumps(metrics))
        if arguments.output is not None:
            record = {"checkpoint": str(arguments.checkpoint), "split": split, **metrics}
            write_json(arguments.output, record)

    return run_command("evaluate", evaluate)


if __name__ == "__main__":
    sys.exit(main())
