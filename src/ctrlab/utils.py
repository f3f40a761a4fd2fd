"""Run-directory helpers: the environment record and small I/O utilities."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy", "polars", "wandb")


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform.processor() elsewhere, often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_summary() -> str:
    """One line for benchmark output: OS, CPU, torch threads, Python and torch versions."""
    return (
        f"{platform.platform()} | CPU: {cpu_name()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch "
        f"threads) | python {platform.python_version()} | torch {torch.__version__}"
    )


def environment() -> dict[str, Any]:
    """What a run ran on: interpreter, hardware, package versions, git commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": versions,
        "git_commit": commit,
        "argv": sys.argv,
    }


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically: a temp file in the same folder, then a rename, so a reader or a crash
    never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (see ``write_text_atomic``)."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))


def require_writable(path: str | Path, what: str, key: str, default: str) -> None:
    """Raise PermissionError, naming the config ``key`` that moves ``path`` and its ``default``, unless
    ``path`` can be written or created (checked on its nearest existing ancestor; nothing is created)."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{what}: {existing} is not writable. Move it with `{key}=<a writable folder>` on the command line, "
            f"or with the environment variable CTRLAB_ROOT (`{key}` defaults to {default})"
        )


class CheckLogDir(Callback):
    """Hydra callback (configs/hydra/default.yaml): an unwritable ``paths.log_dir`` stops the run with a message
    naming the key, before Hydra would fail creating the run folder in it with a bare PermissionError."""

    def _check(self, config: DictConfig) -> None:
        log_dir = config.paths.log_dir
        try:
            require_writable(
                log_dir,
                what=f"cannot write the run's logs under {log_dir}",
                key="paths.log_dir",
                default="$CTRLAB_ROOT/logs",
            )
        except PermissionError as err:
            raise SystemExit(f"Error: {err}") from None  # Hydra turns a callback's Exception into a mere warning

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)
