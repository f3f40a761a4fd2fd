"""What a checkpoint must carry so that a resumed run ends bit-identical to one never stopped.

Lightning restores the weights, optimizer states, loop counters and the training loader's position (see
``ctrlab.data.datamodule.BatchLoader.state_dict``). Two things it leaves out are added here:

- ``RandomState``: the Python, NumPy and torch generators (dropout draws from torch's), saved with each
  checkpoint and restored on resume;
- ``ResumableModelCheckpoint``: Lightning's ``ModelCheckpoint`` forgets the best score when a run resumes into a
  new folder ("dirpath has changed ..."), so the better epoch trained before the interruption could never be
  chosen. This one carries the best score over and copies the best checkpoint into the new folder, so the new
  run is self-contained and the old folder is never written to.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.trainer.states import TrainerFn


class RandomState(pl.Callback):
    """Saves the global random generators with every checkpoint and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        # plain types and tensors only, so that checkpoints still load with torch.load(weights_only=True)
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
        return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        n = state_dict["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        torch.set_rng_state(state_dict["torch"])


class ResumableModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose best score survives a resume into another folder (see the module docstring),
    and which remembers the epoch and step of the best checkpoint for ``metrics.json`` (``best_epoch``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.best_epoch: int | None = None
        self.best_step: int | None = None

    # Lightning saves from one of these two hooks, depending on when validation runs. The best epoch is noted
    # before the save, so that the checkpoints written now (best and last) already carry it for a resume.
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note_best(trainer)
        super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note_best(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def _note_best(self, trainer: pl.Trainer) -> None:
        current = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        fitting = trainer.state.fn == TrainerFn.FITTING  # not trainer.validate() on the best checkpoint
        if fitting and current is not None and self.check_monitor_top_k(trainer, current):
            self.best_epoch, self.best_step = trainer.current_epoch, trainer.global_step

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch, "best_step": self.best_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_epoch, self.best_step = state_dict.get("best_epoch"), state_dict.get("best_step")
        old_dir = state_dict.get("dirpath")
        if self.dirpath is None or old_dir is None or Path(old_dir).resolve() == Path(self.dirpath).resolve():
            super().load_state_dict(state_dict)
            return
        # a new folder: bring the best checkpoint along, then restore as if the folder had never changed
        state = dict(state_dict, dirpath=self.dirpath)
        best = Path(state_dict.get("best_model_path") or "")
        if best.is_file():
            Path(self.dirpath).mkdir(parents=True, exist_ok=True)
            copy = Path(self.dirpath) / best.name
            shutil.copy2(best, copy)
            state["best_model_path"] = str(copy)
            state["best_k_models"] = {str(copy): state_dict["best_model_score"]}
            state["kth_best_model_path"] = str(copy)
        else:
            state["best_k_models"], state["kth_best_model_path"] = {}, ""
        state["last_model_path"] = ""  # the new folder's last.ckpt is written by this run
        super().load_state_dict(state)


class RunFolderError(RuntimeError):
    """A run was pointed at a folder that holds another run's results."""


RESULT_FILES = ("metrics.json", "checkpoints", "csv/metrics.csv")


def check_run_folder(output_dir: Path, ckpt_path: str | None) -> None:
    """Refuse a run folder that holds another run's results, unless this run resumes that very run.

    Two runs with the same ``hydra.run.dir`` would otherwise both exit 0, the second's ``metrics.json`` replacing
    the first's while ``checkpoints/last.ckpt`` still held the first model beside ``last-v1.ckpt``.
    """
    found = [name for name in RESULT_FILES if (output_dir / name).exists() and _nonempty(output_dir / name)]
    if not found:
        return
    resuming_here = ckpt_path is not None and Path(ckpt_path).resolve().parent == (output_dir / "checkpoints").resolve()
    if resuming_here:
        return
    raise RunFolderError(
        f"run folder {output_dir} already holds another run's results ({', '.join(found)}); nothing was changed. "
        f"To resume that run: ckpt_path={output_dir / 'checkpoints' / 'last.ckpt'}; to start a new run, choose "
        "another folder (hydra.run.dir=...) or remove this one."
    )


def _nonempty(path: Path) -> bool:
    return path.is_file() or any(path.iterdir())


def carry_csv_log(ckpt_path: str, loggers: list[Any]) -> None:
    """Resume the CSV log: the rows the checkpoint's run logged before the checkpoint are carried into this
    run's ``csv/metrics.csv`` (same folder or a new one); the rows it logged after the checkpoint describe
    training that is now redone and are dropped. The resumed run's rows follow them.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so the kept rows are handed to it
    as its first pending rows rather than left in the file.
    """
    old = Path(ckpt_path).resolve().parent.parent / "csv" / "metrics.csv"
    csv_logger = next((lg for lg in loggers if isinstance(lg, CSVLogger)), None)
    if csv_logger is None or not old.is_file():
        return
    # memory-mapped: only the step is read here, not the weights that fit() is about to load
    step = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"]
    with old.open(newline="") as f:
        rows = [{k: _cell(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    # training rows only (not the best checkpoint's scores after fit); a row logged at the checkpoint's own
    # validation has step = global_step - 1
    kept = [row for row in rows if row.get("stage", "fit") == "fit" and row["step"] < step]
    csv_logger.experiment.metrics[:0] = kept


def _cell(text: str) -> int | float | str:
    """A CSV cell as Lightning's writer had it: step and epoch are ints, metrics floats, ``stage`` a word."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
