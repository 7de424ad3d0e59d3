"""A baked project's CUDA path, end to end: `python -m tests.device_checks PROJECT OUTPUT_DIR`.

Runs on a GPU machine with that machine's torch, the project's package importable
(`PYTHONPATH=PROJECT/src`), as the generated GPU job does in its CUDA image. Every check runs the
project's own commands (`python -m <package>.train ...`) in a process of its own, as a user
would, and reads what they wrote; one failing check does not stop the others. Writes
cuda-checks.json (every figure) and cuda-checks.md (the table), and exits 1 if a check failed.

`--cpu` runs every command with `train.device=cpu` instead, so the script itself can be tried
on a machine without a GPU before device time is spent; the CUDA-only assertions then fail.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tests.baking import package_name

# Seconds for one command: a hung one must leave time for the rest in the device tool's 10
# minutes a call. torch.compile's first run is the longest (Inductor builds its kernels).
TIMEOUT, COMPILE_TIMEOUT = 120, 240
# The stop-and-resume run: long enough on an H200 (2 epochs of 1024 steps) that SIGTERM lands
# mid-run after the first 100 steps are logged.
LONG_RUN = ("data.num_train=65536", "train.epochs=2")


class CheckFailedError(Exception):
    pass


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailedError(message)


@dataclass
class Project:
    root: Path
    work: Path
    device: str
    package: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.package = package_name(self.root)

    def command(self, module: str, *arguments: str) -> list[str]:
        return [sys.executable, "-m", f"{self.package}.{module}", *arguments]

    def run(
        self,
        label: str,
        module: str,
        *arguments: str,
        timeout: float = TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.execute(label, self.command(module, *arguments), timeout, env)

    def execute(
        self,
        label: str,
        command: list[str],
        timeout: float = TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """`command` in the project's folder, timed, its output kept in work/<label>.log."""
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=timeout,
            check=False, env={**os.environ, **(env or {})},
        )  # fmt: skip
        self.seconds[label] = round(time.perf_counter() - started, 2)
        (self.work / f"{label}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
        return done

    def train(
        self,
        name: str,
        *overrides: str,
        config: str = "smoke",
        timeout: float = TIMEOUT,
        env: dict[str, str] | None = None,
    ) -> Path:
        """A completed run in work/name; a CheckFailedError with its last output if it was not."""
        folder = self.work / name
        arguments = self.train_arguments(folder, config, overrides)
        done = self.run(name, "train", *arguments, timeout=timeout, env=env)
        expect(done.returncode == 0, f"train exited {done.returncode}: {tail(done)}")
        expect(manifest(folder)["status"] == "completed", f"run.json: {manifest(folder)}")
        return folder

    def train_arguments(self, folder: Path, config: str, overrides: tuple[str, ...]) -> list[str]:
        return [
            "--config", f"configs/{config}.yaml", f"train.device={self.device}",
            f"output_dir={folder}", *overrides,
        ]  # fmt: skip


def tail(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr).strip()[-600:]


def manifest(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "run.json").read_text(encoding="utf-8")))


def records(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def step_losses(folder: Path) -> list[float]:
    return [float(record["loss"]) for record in records(folder) if "loss" in record]


def val_losses(folder: Path) -> list[float]:
    return [float(record["val_loss"]) for record in records(folder) if "val_loss" in record]


def on_cuda(folder: Path) -> dict[str, float]:
    """The CUDA memory and NVML fields of the run's last telemetry record; a CheckFailedError
    where it has none, so the run was not on CUDA."""
    found = [record for record in records(folder) if "cuda_peak_allocated_mib" in record]
    expect(
        bool(found), f"{folder.name}: no CUDA memory in metrics.jsonl, so it did not run on CUDA"
    )
    names = ("cuda_peak_allocated_mib", "gpu_utilization_percent", "gpu_memory_used_mib")
    return {name: found[-1][name] for name in names if name in found[-1]}


def falls(losses: list[float]) -> dict[str, float]:
    expect(len(losses) > 1, f"{len(losses)} step losses in metrics.jsonl")
    expect(all(math.isfinite(loss) for loss in losses), "a loss is not finite")
    expect(losses[-1] < losses[0], f"the loss did not fall: {losses[0]} -> {losses[-1]}")
    return {"first_loss": losses[0], "last_loss": losses[-1], "steps": len(losses)}


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def health(project: Project) -> dict[str, Any]:
    done = project.run("health", "health_check", "--require-cuda")
    expect(done.returncode == 0, f"health_check exited {done.returncode}: {tail(done)}")
    return {"devices": [line for line in done.stdout.splitlines() if line.startswith("device")]}


def smoke(project: Project) -> dict[str, Any]:
    folder = project.train("smoke")
    return {**falls(step_losses(folder)), **on_cuda(folder), "seconds": project.seconds["smoke"]}


def default(project: Project) -> dict[str, Any]:
    folder = project.train("default", config="default")
    totals = manifest(folder).get("telemetry", {})
    return {**falls(step_losses(folder)), "run_json_telemetry": totals, **on_cuda(folder)}


def mixed_precision(project: Project) -> dict[str, Any]:
    """bf16, and fp16 with its grad scaler, with accumulation and clipping, against fp32."""
    knobs = ("train.grad_accum_steps=2", "optim.grad_clip=0.5")
    full = step_losses(project.train("fp32-accum-clip", *knobs))
    figures: dict[str, Any] = {}
    for amp in ("bf16", "fp16"):
        folder = project.train(f"{amp}-accum-clip", f"train.amp={amp}", *knobs)
        losses = step_losses(folder)
        log = (project.work / f"{amp}-accum-clip.log").read_text(encoding="utf-8")
        ignored = [line for line in log.splitlines() if f"train.amp={amp} ignored" in line]
        expect(not ignored, f"{amp}: {ignored}")
        expect(losses != full, f"{amp}: losses identical to fp32's, so autocast did not act")
        expect(len(losses) == len(full), f"{amp}: {len(losses)} steps, fp32 took {len(full)}")
        figures[amp] = {
            **falls(losses),
            "first_loss_vs_fp32": relative(losses[0], full[0]),
            "last_loss_vs_fp32": relative(losses[-1], full[-1]),
        }
        expect(figures[amp]["first_loss_vs_fp32"] < 2e-2, f"{amp}: first loss far from fp32's")
        if amp == "fp16":
            last = folder / "checkpoints" / "last.pt"
            scaler = torch.load(last, map_location="cpu", weights_only=True)["scaler"]
            expect(bool(scaler), "fp16: the checkpoint holds no grad-scaler state")
            figures[amp]["grad_scale"] = float(scaler["scale"])
    return figures


def compiled(project: Project) -> dict[str, Any]:
    eager = step_losses(project.work / "smoke")
    # Inductor's cache of its own: kernels in it show that the model was compiled, not run eager.
    kernels = project.work / "inductor-cache"
    folder = project.train(
        "compiled", "train.compile=true", timeout=COMPILE_TIMEOUT,
        env={"TORCHINDUCTOR_CACHE_DIR": str(kernels)},
    )  # fmt: skip
    losses = step_losses(folder)
    compiled_files = sum(1 for path in kernels.rglob("*") if path.is_file())
    expect(compiled_files > 0, f"nothing in {kernels}: torch.compile did not compile")
    return {
        **falls(losses),
        "inductor_cache_files": compiled_files,
        "seconds": project.seconds["compiled"],
        "eager_seconds": project.seconds["smoke"],
        "last_loss_vs_eager": relative(losses[-1], eager[-1]),
    }


def deterministic_repeat(project: Project) -> dict[str, Any]:
    first = step_losses(project.work / "smoke")
    again = step_losses(project.train("smoke-again"))
    expect(again == first, "two runs of one config differ: not bitwise repeatable on CUDA")
    return {"steps_compared": len(first), "bitwise_identical": True}


def stop_and_resume(project: Project) -> dict[str, Any]:
    """SIGTERM mid-run, exit 143, then resume=auto: every step's loss as in a straight run."""
    straight = step_losses(project.train("straight", *LONG_RUN))
    folder = project.work / "stopped"
    arguments = project.train_arguments(folder, "smoke", LONG_RUN)
    process = subprocess.Popen(
        project.command("train", *arguments), cwd=project.root, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stderr = signal_after_steps(process, folder / "metrics.jsonl", 100)
    finally:  # never a run left training on the GPU beside the next checks
        if process.poll() is None:
            process.kill()
            process.communicate()
    expect(process.returncode == 128 + signal.SIGTERM, f"exit {process.returncode}: {stderr}")
    expect(manifest(folder)["status"] == "interrupted", f"run.json: {manifest(folder)}")
    stopped_at = len(step_losses(folder))
    expect(0 < stopped_at < len(straight), f"stopped at {stopped_at} of {len(straight)} steps")
    resumed = project.run("resumed", "train", *arguments, "resume=auto")
    expect(resumed.returncode == 0, f"resume exited {resumed.returncode}: {tail(resumed)}")
    expect(step_losses(folder) == straight, "the resumed run's losses differ from a straight run's")
    return {"stopped_after_steps": stopped_at, "steps": len(straight), "bitwise_identical": True}


def signal_after_steps(process: subprocess.Popen[str], metrics: Path, steps: int) -> str:
    """SIGTERM once metrics.jsonl holds `steps` lines; the process's stderr once it exits."""
    deadline = time.monotonic() + TIMEOUT
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= steps):
        if process.poll() is not None:  # (not in expect's message: that would wait for the end)
            raise CheckFailedError(f"ended before the signal: {process.communicate()}")
        expect(time.monotonic() < deadline, "training never started")
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=TIMEOUT)[1]


def torchrun_launch(project: Project) -> dict[str, Any]:
    """torchrun with one process. World size 1, so the project trains as one process (no process
    group, no DDP): what this shows is that the launch and its environment work on the GPU."""
    folder = project.work / "torchrun"
    done = run_torchrun(project, "torchrun", "-m", f"{project.package}.train",
                        *project.train_arguments(folder, "smoke", ()))  # fmt: skip
    expect(done.returncode == 0, f"torchrun exited {done.returncode}: {tail(done)}")
    expect(manifest(folder)["status"] == "completed", f"run.json: {manifest(folder)}")
    losses, single = step_losses(folder), step_losses(project.work / "smoke")
    expect(losses == single, "the losses differ from the same run without torchrun")
    return {**falls(losses), "bitwise_as_without_torchrun": True}


# DDP over NCCL in a one-rank group: one GPU cannot hold two NCCL ranks (NCCL refuses two ranks
# on one device). The same step with and without DDP must give the same gradients.
NCCL_DDP = """
import os, sys
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from {package}.models import SmallCNN
from {package}.reproducibility import configure_determinism
cuda = sys.argv[1] == "cuda"
if cuda:
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl" if cuda else "gloo")
configure_determinism(True)
device = torch.device("cuda" if cuda else "cpu")
torch.manual_seed(0)
plain = SmallCNN(1, 10, 16).to(device)
copy = SmallCNN(1, 10, 16).to(device)
copy.load_state_dict(plain.state_dict())
wrapped = DistributedDataParallel(copy, device_ids=[device.index] if cuda else None)
images = torch.randn(32, 1, 16, 16, device=device)
labels = torch.randint(0, 10, (32,), device=device)
for model in (plain, wrapped):
    torch.nn.functional.cross_entropy(model(images), labels).backward()
pairs = zip(plain.parameters(), copy.parameters(), strict=True)
difference = max(float((a.grad - b.grad).abs().max()) for a, b in pairs)
total = torch.full((1,), 3.0, device=device)
dist.all_reduce(total)
print(dist.get_backend(), dist.get_world_size(), float(total), difference)
dist.destroy_process_group()
"""


def nccl_ddp(project: Project) -> dict[str, Any]:
    code = NCCL_DDP.format(package=project.package)
    done = run_torchrun(project, "nccl-ddp", "--no-python", sys.executable, "-c", code,
                        project.device)  # fmt: skip
    expect(done.returncode == 0, f"exited {done.returncode}: {tail(done)}")
    backend, world_size, total, difference = done.stdout.split()[-4:]
    expected = "nccl" if project.device == "cuda" else "gloo"
    expect((backend, world_size) == (expected, "1"), f"{backend}, world size {world_size}")
    expect(float(total) == 3.0, f"all_reduce of one rank's 3.0 gave {total}")
    expect(float(difference) < 1e-6, f"DDP's gradients differ from plain ones by {difference}")
    return {"backend": backend, "largest_gradient_difference": float(difference)}


def run_torchrun(project: Project, label: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    return project.execute(label, [*launcher, *arguments])


def evaluate(project: Project) -> dict[str, Any]:
    """The CUDA-trained best.pt evaluated on CUDA and on the CPU: the run's own val_loss."""
    best = project.work / "smoke" / "checkpoints" / "best.pt"
    results = {}
    for device in (project.device, "cpu"):
        output = project.work / f"evaluate-{device}.json"
        done = project.run(
            f"evaluate-{device}", "evaluate", "--checkpoint", str(best), "--output", str(output),
            f"train.device={device}",
        )  # fmt: skip
        expect(done.returncode == 0, f"evaluate on {device} exited {done.returncode}: {tail(done)}")
        results[device] = json.loads(output.read_text(encoding="utf-8"))
    best_val = min(val_losses(project.work / "smoke"))
    # cuDNN's convolutions use TF32 on this GPU by default (torch.backends.cudnn.allow_tf32),
    # about 1e-3 of relative error; the same device and kernels as the run must agree closely.
    cuda_vs_cpu = relative(results[project.device]["val_loss"], results["cpu"]["val_loss"])
    expect(cuda_vs_cpu < 1e-2, f"evaluate on CUDA and CPU differ by {cuda_vs_cpu:.1e}")
    vs_run = relative(results[project.device]["val_loss"], best_val)
    expect(vs_run < 1e-6, f"evaluate's val_loss is {vs_run:.1e} away from the run's best")
    return {"metrics": results, "cuda_vs_cpu": cuda_vs_cpu, "vs_run_best_val_loss": vs_run}


def export(project: Project) -> dict[str, Any]:
    best = project.work / "smoke" / "checkpoints" / "best.pt"
    figures = {}
    for format_name, suffix in (("exported-program", "pt2"), ("onnx", "onnx")):
        output = project.work / f"model.{suffix}"
        done = project.run(
            f"export-{format_name}", "export", "--checkpoint", str(best), "--format", format_name,
            "--output", str(output),
        )  # fmt: skip
        expect(done.returncode == 0, f"export {format_name} exited {done.returncode}: {tail(done)}")
        expect(output.is_file(), f"export {format_name} wrote no {output.name}")
        figures[format_name] = done.stdout.strip().splitlines()[-1]
    return figures


def telemetry(project: Project) -> dict[str, Any]:
    """NVML's fields, from the default run (10 epochs, so NVML has seen the GPU busy)."""
    fields = on_cuda(project.work / "default")
    for name in ("gpu_utilization_percent", "gpu_memory_used_mib"):
        expect(name in fields, f"metrics.jsonl has no {name}: NVML was not read")
    expect(fields["gpu_memory_used_mib"] > 0, "NVML says the GPU holds no memory")
    return fields


CHECKS: dict[str, tuple[str, Callable[[Project], dict[str, Any]]]] = {
    "health": ("health check with --require-cuda", health),
    "smoke": ("configs/smoke.yaml on CUDA", smoke),
    "default": ("configs/default.yaml on CUDA", default),
    "mixed_precision": (
        "AMP bf16 and fp16 (grad scaler), accumulation 2, clipping",
        mixed_precision,
    ),
    "compile": ("train.compile=true", compiled),
    "deterministic": ("the smoke run repeated: bitwise the same losses", deterministic_repeat),
    "resume": ("SIGTERM mid-run, exit 143, resume=auto: bitwise a straight run", stop_and_resume),
    "torchrun": ("torchrun, 1 process (world size 1: no process group)", torchrun_launch),
    "nccl": ("DDP over NCCL, one rank: gradients as without DDP", nccl_ddp),
    "evaluate": ("evaluate the CUDA-trained best.pt on CUDA and CPU", evaluate),
    "export": ("export it as an exported program and as ONNX", export),
    "telemetry": ("NVML telemetry in metrics.jsonl", telemetry),
}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# The CUDA path, checked on a GPU", "",
        f"Device: **{results['device_name']}**; torch {results['torch']} (CUDA "
        f"{results['cuda']}). Each check runs the baked project's own commands in a process of "
        "its own (`tests/device_checks.py`); figures in cuda-checks.json.", "",
        "| check | result | seconds |", "| --- | --- | --- |",
    ]  # fmt: skip
    for name, (title, _) in CHECKS.items():
        outcome = results["checks"].get(name)
        if outcome is None:
            verdict, seconds = "not run (the script was stopped before it)", ""
        else:
            error = str(outcome.get("error", "")).replace("|", "\\|")
            verdict = "passed" if outcome["passed"] else f"FAILED: {error}"
            seconds = f"{outcome['seconds']:.1f}"
        lines.append(f"| {title} | {verdict} | {seconds} |")
    return "\n".join([*lines, ""])


def write_results(results: dict[str, Any], output_dir: Path) -> str:
    """Both files as they stand: written after every check, so that a script stopped part-way
    (a hung command, the device tool's time limit) still leaves what it found."""
    (output_dir / "cuda-checks.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (output_dir / "cuda-checks.md").write_text(text, encoding="utf-8")
    return text


def main(project_root: Path, output_dir: Path, device: str) -> int:
    output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cuda-checks-"))
    project = Project(project_root.resolve(), work, device)
    results: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "work": str(work),
        "checks": {},
        "command_seconds": project.seconds,
    }
    for name, (title, check) in CHECKS.items():
        started = time.perf_counter()
        try:
            outcome = {"passed": True, "figures": check(project)}
        except Exception as error:  # each check's failure is reported, not raised
            message = str(error) if isinstance(error, CheckFailedError) else traceback.format_exc()
            outcome = {"passed": False, "error": message.strip().splitlines()[-1][:300],
                       "detail": message}  # fmt: skip
        outcome["seconds"] = round(time.perf_counter() - started, 1)
        results["checks"][name] = outcome
        print(f"{'ok  ' if outcome['passed'] else 'FAIL'} {title} ({outcome['seconds']} s)",
              flush=True)  # fmt: skip
        text = write_results(results, output_dir)
    print(text)
    return 0 if all(outcome["passed"] for outcome in results["checks"].values()) else 1


if __name__ == "__main__":
    arguments = sys.argv[1:]
    paths = [argument for argument in arguments if argument != "--cpu"]
    if len(paths) != 2:
        sys.exit("usage: python -m tests.device_checks PROJECT OUTPUT_DIR [--cpu]")
    sys.exit(main(Path(paths[0]), Path(paths[1]), "cpu" if "--cpu" in arguments else "cuda"))
