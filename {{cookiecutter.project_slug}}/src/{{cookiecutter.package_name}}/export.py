"""Export a trained model for serving: `python -m <package>.export --checkpoint PATH
--format exported-program|onnx|weights|safetensors --output FILE`.

- exported-program (`.pt2`): a `torch.export` program; `torch.export.load(FILE).module()(images)`
  runs it without this project installed (PyTorch only). The batch size stays free.
- onnx (`.onnx`): for ONNX Runtime and other engines; needs the `onnx` extra
  (`uv sync --locked --inexact --extra onnx`), which also checks the file with ONNX Runtime.
- weights (`.pt`): the weights, config and preprocessing only, safe to open with
  `torch.load(FILE, weights_only=True)`; evaluate and predict accept it as --checkpoint.
- safetensors (`.safetensors`): the weights as safetensors (no pickle; read by any framework),
  with the config, preprocessing and class names as JSON in its metadata; evaluate, predict and
  `init_from` accept it.
Before a file is kept, it is loaded back and run on a batch beside the eager model; the largest
difference is printed, and above 1e-5 the command fails and keeps nothing.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic_files import write_atomically, write_bytes
from .checkpoint import save_checkpoint
from .config import to_dict
from .errors import ConfigError, InputError, MissingPackageError, run_command, sync_extra
from .inference import TrainedModel, load_trained_model
from .weights import SAFETENSORS_SUFFIX, safetensors_bytes

TOLERANCE = 1e-5  # largest difference from the eager model's logits that an export may show
EXAMPLE_BATCH = 8
SUFFIX = {
    "exported-program": ".pt2", "onnx": ".onnx", "weights": ".pt",
    "safetensors": SAFETENSORS_SUFFIX,
}  # fmt: skip


def example_inputs(trained: TrainedModel) -> torch.Tensor:
    """A seeded batch shaped like the model's inputs (export checks need shapes, not data)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(EXAMPLE_BATCH, *trained.preprocessing.input_shape, generator=generator)


def batch_dimension() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch", min=1, max=65536)}


def write_exported_program(trained: TrainedModel, inputs: torch.Tensor, path: Path) -> None:
    program = torch.export.export(trained.model, (inputs,), dynamic_shapes=(batch_dimension(),))
    torch.export.save(program, path)


def run_exported_program(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    module = torch.export.load(path).module()
    outputs: torch.Tensor = module(inputs)
    return outputs


def write_onnx(trained: TrainedModel, inputs: torch.Tensor, path: Path) -> None:
    onnx_runtime()  # refuse before the slow export when the extra is missing
    torch.onnx.export(
        trained.model, (inputs,), str(path), dynamo=True, dynamic_shapes=(batch_dimension(),),
        input_names=["images"], output_names=["logits"], verbose=False,
        # One self-contained file (weights inside), as ONNX allows below 2 GB; a side file would
        # keep the temporary name this file is written under.
        external_data=False,
    )  # fmt: skip


def run_onnx(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    session = onnx_runtime().InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (outputs,) = session.run(["logits"], {"images": inputs.numpy()})
    return torch.from_numpy(np.asarray(outputs))


def onnx_runtime() -> Any:
    try:
        importlib.import_module("onnxscript")  # torch.onnx.export's exporter needs it
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise MissingPackageError(
            f"export --format onnx needs the onnx extra: {sync_extra('onnx')}"
        ) from None


def write_weights(trained: TrainedModel, inputs: torch.Tensor, path: Path) -> None:
    state = {
        "model": trained.model.state_dict(),
        "config": to_dict(trained.config),
        "preprocessing": trained.preprocessing.to_dict(),
    }
    save_checkpoint(state, path)


def run_weights(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    # Through torch.load(weights_only=True), as serving will load it.
    outputs: torch.Tensor = load_trained_model(path).model(inputs)
    return outputs


def write_safetensors(trained: TrainedModel, inputs: torch.Tensor, path: Path) -> None:
    tensors = trained.model.state_dict()
    config, preprocessing = to_dict(trained.config), trained.preprocessing.to_dict()
    write_bytes(path, safetensors_bytes(tensors, config, preprocessing))


# Each format: how to write the file, and how to run what was written (for the check).
Write = Callable[[TrainedModel, torch.Tensor, Path], None]
Run = Callable[[Path, torch.Tensor], torch.Tensor]
FORMATS: dict[str, tuple[Write, Run]] = {
    "exported-program": (write_exported_program, run_exported_program),
    "onnx": (write_onnx, run_onnx),
    "weights": (write_weights, run_weights),
    "safetensors": (write_safetensors, run_weights),  # run_weights reads either kind back
}


def export(checkpoint: str | Path, format_name: str, output: Path) -> float:
    """Write `output`, check it against the eager model; returns the largest difference."""
    if output.suffix != SUFFIX[format_name]:
        raise ConfigError(
            f"--output {output}: --format {format_name} writes a {SUFFIX[format_name]} file; "
            f"e.g. --output {output.with_suffix(SUFFIX[format_name])}"
        )
    trained = load_trained_model(checkpoint)
    inputs = example_inputs(trained)
    with torch.no_grad():
        expected = trained.model(inputs)
    write, run = FORMATS[format_name]
    # Written and checked in a scratch folder (the exporters want a path), then put in place
    # whole: a failed export or check leaves no file to mistake for a good one.
    with tempfile.TemporaryDirectory(prefix="export-") as scratch_folder:
        scratch = Path(scratch_folder) / output.name
        write(trained, inputs, scratch)
        with torch.no_grad():
            difference = float((run(scratch, inputs) - expected).abs().max())
        if not difference <= TOLERANCE:
            raise InputError(
                f"the {format_name} export differs from the eager model by {difference:.2e} "
                f"(more than {TOLERANCE:g}); nothing was written. Please report it with the model"
            )
        with scratch.open("rb") as written:
            write_atomically(output, lambda file: shutil.copyfileobj(written, file))
    return difference


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a checkpoint's model for serving.")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="e.g. .../best.pt, or s3://bucket/run/checkpoints/best.pt",
    )
    parser.add_argument("--format", choices=list(FORMATS), required=True)
    parser.add_argument("--output", type=Path, required=True, help="the file to write")
    arguments = parser.parse_args(argv)

    def export_and_report() -> None:
        difference = export(arguments.checkpoint, arguments.format, arguments.output)
        print(
            f"wrote {arguments.output} ({arguments.format}); largest difference from the eager "
            f"model on a batch of {EXAMPLE_BATCH}: {difference:.2e}"
        )

    return run_command("export", export_and_report)


if __name__ == "__main__":
    sys.exit(main())
