"""``CTRDataModule``: prepares a source's cache, memory-maps it and yields whole batches.

Batches are cut by slicing (or fancy-indexing) the arrays, never by a per-row ``__getitem__`` + collate:
on CPU that path is 5-10x slower. Cached train rows are already in random order (the sources write
them shuffled), so an epoch visits the batches in a fresh random order of their starts.

``data.resident`` says where a split lives while it is served (``resident_split``): ``host`` reads the cache's
memory map batch by batch (numpy -> torch on the host, then Lightning copies each batch to the device);
``device`` copies the whole split once onto the trainer's device and cuts every batch there (no per-batch host
work); ``pinned`` keeps it whole in page-locked host memory and copies each batch with ``non_blocking`` (a GPU
split too large for the device); ``auto`` is ``device`` on a GPU when the splits fit in a share of its free
memory, else ``pinned`` there, and ``host`` on CPU. Every mode serves the same batches in the same order.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch

from ctrlab.data import cache
from ctrlab.data.cache import DatasetSource, SplitArrays
from ctrlab.data.crosses import CrossSpec, attach_crosses, prepare_crosses
from ctrlab.data.schema import FeatureMap

# ids [B, F] int64, label [B] float32; optional: values [B, F] float32 (numeric fields),
# bag_ids [B, F_bag, L] int64 + bag_lengths [B, F_bag] int64 (multi-valued / sequence fields, 0-padded),
# cross_ids [B, P] int64 (cross-product features)
Batch = dict[str, torch.Tensor]

Resident = Literal["auto", "host", "device", "pinned"]
RESIDENT = ("auto", "host", "device", "pinned")
_NUMPY = {torch.int64: np.int64, torch.float32: np.float32}
DEVICE_SHARE = 0.5  # auto: a GPU holds the splits if they take at most this share of its free memory


def resident_split(arrays: SplitArrays, where: Literal["device", "pinned"], device: torch.device) -> SplitArrays:
    """The split copied whole into torch tensors, in the cache's dtypes: on ``device`` (``device``) or in
    page-locked host memory (``pinned``, needs CUDA). ``BatchLoader`` then cuts batches from these tensors."""

    def move(array: np.ndarray | None) -> torch.Tensor | None:
        if array is None:
            return None
        tensor = torch.from_numpy(np.array(array))  # read the memory map once, into writable memory
        return tensor.pin_memory() if where == "pinned" else tensor.to(device)

    return SplitArrays(**{f.name: move(getattr(arrays, f.name)) for f in dataclasses.fields(SplitArrays)})


def choose_resident(resident: Resident, device: torch.device, splits: dict[str, SplitArrays]) -> str:
    """``data.resident`` for this device: ``auto`` resolved (see the module docstring), the others checked."""
    if resident == "pinned" and device.type != "cuda":
        raise ValueError(f"data.resident = 'pinned' copies batches to a GPU; the trainer's device is {device}")
    if resident != "auto":
        return resident
    if device.type != "cuda":
        return "host"
    arrays = [getattr(split, f.name) for split in splits.values() for f in dataclasses.fields(split)]
    size = sum(a.nbytes for a in arrays if a is not None)
    free, _ = torch.cuda.mem_get_info(device)
    return "device" if size <= DEVICE_SHARE * free else "pinned"


@dataclass(frozen=True)
class RareValueGroup:
    """Score the test split on one group only: the rows whose ``field`` value was seen fewer than
    ``fewer_than`` times in the train split (``data.test_group``; DPN Table 3: users seen fewer than 20 times).
    Training and validation see every row; only the test scores are the group's."""

    field: str
    fewer_than: int

    def rows(self, train_ids: np.ndarray, ids: np.ndarray, oov_id: int) -> np.ndarray:
        """A mask over ``ids`` [N] (the field's test ids): a count table of the field's train ids [N_train],
        looked up per row. The OOV id stands for the values below the data's own count threshold, which are in
        the group as long as that threshold is at most ``fewer_than`` (``build_datamodule`` checks it)."""
        counts = np.bincount(train_ids, minlength=oov_id + 1)  # [vocab]: train occurrences of each id
        return (counts[ids] < self.fewer_than) | (ids == oov_id)

    def apply(self, fm: FeatureMap, splits: dict[str, SplitArrays]) -> None:
        """Restrict ``splits["test"]`` to the group, and say so in ``fm`` (split size, description); the test
        split's oracle, computed on every row, no longer applies and is dropped."""
        names = [f.name for f in fm.scalar_fields]
        if self.field not in names:
            raise ValueError(f"data.test_group.field={self.field!r} is not a field of {fm.dataset}: {names}")
        f = names.index(self.field)
        test = splits["test"]
        mask = self.rows(np.asarray(splits["train"].ids[:, f]), np.asarray(test.ids[:, f]), fm.fields[f].oov_id)
        if not mask.any():
            raise ValueError(f"data.test_group: no test row of {fm.dataset} has a {self.field} seen fewer than "
                             f"{self.fewer_than} times in train")  # fmt: skip
        splits["test"] = replace(
            test, **{k: getattr(test, k)[mask] for k in ("ids", "labels", "values", "bags", "crosses")
                     if getattr(test, k) is not None}
        )  # fmt: skip
        fm.description += (
            f"; test split: the {int(mask.sum()):,} of {len(mask):,} rows whose {self.field} was seen fewer than "
            f"{self.fewer_than} times in train"
        )
        fm.split_sizes = {**fm.split_sizes, "test": int(mask.sum())}
        if "oracle" in fm.extra:
            fm.extra = {**fm.extra, "oracle": {k: v for k, v in fm.extra["oracle"].items() if k != "test"}}


class BatchLoader:
    """Iterates over one split in whole batches; shards by rank under DDP.

    The split is numpy arrays (memory-mapped; batches cut on the host) or torch tensors from ``resident_split``
    (batches cut where they live and sent to ``device`` with ``non_blocking``, then cast there).
    ``even=True`` (training): the epoch's batch starts are dealt to the ranks in turn, each rank the same number
    (the gradient all-reduce must stay in step: the last ``len % world_size`` batches of an epoch's order are
    left out). ``even=False`` (evaluation): each rank takes a contiguous share of the rows, every row once, so
    that no rank is left without a batch when the split is a single batch long.

    A shuffled loader visits the batch starts in a permutation drawn from ``(seed, epoch)``. The epoch is the
    trainer's (``epoch_of``, given by ``CTRDataModule``), so the order depends on the epoch counter a resumed run
    restores and never on how often the loader was iterated in this process; a plain loop calls ``set_epoch``.
    The loader is also stateful: Lightning stores ``state_dict()`` (epoch, batches served) in each checkpoint, so
    a run resumed from a checkpoint written mid-epoch serves exactly the batches the uninterrupted run would
    have served next.
    """

    def __init__(
        self,
        arrays: SplitArrays,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_of: Callable[[], int] | None = None,
        even: bool = True,
        device: torch.device | str = "cpu",
    ) -> None:
        self.arrays, self.batch_size, self.shuffle = arrays, batch_size, shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.epoch_of = 0, epoch_of
        self.device, self.even = torch.device(device), even
        n = len(arrays)
        # the rows this loader cuts batches from: all of them, or (evaluation) this rank's share
        first, self.stop = (0, n) if even else (rank * n // world_size, (rank + 1) * n // world_size)
        self.starts = np.arange(first, self.stop, batch_size)
        self.num_batches = len(self.starts) // world_size if even else len(self.starts)
        self.served = 0  # batches served so far in the current epoch
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches served) from a checkpoint

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[Batch]:
        starts = self.starts
        skip = 0
        if self.shuffle:
            if self.epoch_of is not None:
                self.epoch = self.epoch_of()
            starts = np.random.default_rng([self.seed, self.epoch]).permutation(starts)
            if self._resume_at is not None and self._resume_at[0] == self.epoch:
                skip = self._resume_at[1]  # resumed mid-epoch: the first `skip` batches were trained before
            self._resume_at = None
        if self.even:
            starts = starts[self.rank :: self.world_size][: self.num_batches]
        self.served = skip
        for s in starts[skip:]:
            self.served += 1
            yield self.batch(slice(s, min(s + self.batch_size, self.stop)))

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration visits (plain loops; under Lightning, ``epoch_of``)."""
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "served": self.served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        # applies only if the trainer resumes inside that same epoch; a checkpoint written at an epoch's end is
        # followed by set_epoch(epoch + 1), and the next epoch starts from its first batch
        self._resume_at = (int(state["epoch"]), int(state["served"]))

    def batch(self, rows: slice | np.ndarray) -> Batch:
        a = self.arrays
        out = {"ids": self._cut(a.ids, rows, torch.int64), "label": self._cut(a.labels, rows, torch.float32)}
        if a.values is not None:
            out["values"] = self._cut(a.values, rows, torch.float32)
        if a.bags is not None:
            bags = self._cut(a.bags, rows, torch.int64)
            out["bag_ids"], out["bag_lengths"] = bags, (bags != 0).sum(dim=-1)
        if a.crosses is not None:
            out["cross_ids"] = self._cut(a.crosses, rows, torch.int64)
        return out

    def _cut(self, array: np.ndarray | torch.Tensor, rows: slice | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(array, torch.Tensor):  # resident: cut where the split lives, cast where the model runs
            return array[rows].to(self.device, non_blocking=True).to(dtype)
        return torch.from_numpy(np.array(array[rows], dtype=_NUMPY[dtype]))  # a copy: the memory map is read-only


class CTRDataModule(pl.LightningDataModule):
    def __init__(
        self,
        source: DatasetSource,
        cache_dir: str,
        batch_size: int,
        eval_batch_size: int,
        seed: int,
        crosses: CrossSpec | None = None,
        verify: str = "cheap",
        test_group: RareValueGroup | None = None,
        resident: Resident = "auto",
    ) -> None:
        super().__init__()
        cache.check_verify(verify)
        if resident not in RESIDENT:
            raise ValueError(f"data.resident = {resident!r} is not one of {list(RESIDENT)}")
        self.resident = resident
        self._served: dict[tuple[str, torch.device], SplitArrays] = {}  # as the loaders serve them, by device
        self.source = source
        self.crosses = crosses
        self.test_group = test_group
        self.cache_dir, self.verify = cache_dir, verify  # verify: cheap | full, how the cache is checked when opened
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.folder: Path | None = None
        self.cross_folder: Path | None = None
        self.feature_map: FeatureMap | None = None
        self.splits: dict[str, SplitArrays] = {}

    def prepare_data(self) -> None:
        # train.py prepares before building the model, then fit/validate/test ask again: validate the cache once
        if self.folder is None:
            self.folder = cache.prepare(self.source, self.cache_dir, self.verify)
            if self.crosses is not None:
                self.cross_folder = prepare_crosses(self.folder, self.crosses, self.verify)

    def setup(self, stage: str | None = None) -> None:
        if self.feature_map is not None:
            return
        if self.folder is None:  # on DDP ranks other than 0, prepare_data did not run here
            self.prepare_data()
        self.feature_map, self.splits = cache.load(self.folder)
        if self.cross_folder is not None:
            attach_crosses(self.cross_folder, self.feature_map, self.splits)
        if self.test_group is not None:
            self.test_group.apply(self.feature_map, self.splits)

    def _loader(self, split: str, train: bool) -> BatchLoader:
        trainer = self.trainer  # None outside a Trainer (e.g. in tests)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        return BatchLoader(
            self._split(split, device),
            self.batch_size if train else self.eval_batch_size,
            # overfit_batches must see the same batches every epoch; Lightning unshuffles only its own DataLoader
            shuffle=train and not (trainer is not None and trainer.overfit_batches > 0),
            seed=self.seed,
            # evaluation is sharded too (every row scored once, on one rank); CTRModule gathers its metrics
            rank=rank,
            world_size=world,
            epoch_of=(lambda: trainer.current_epoch) if train and trainer is not None else None,
            even=train,
            device=device,
        )

    def _split(self, split: str, device: torch.device) -> SplitArrays:
        """The split as the loaders serve it: copied whole to ``device`` or pinned memory once (``data.resident``)
        and kept for the next loader, or the memory-mapped arrays as they are."""
        if (split, device) not in self._served:
            where = choose_resident(self.resident, device, self.splits)
            arrays = self.splits[split]
            self._served[split, device] = arrays if where == "host" else resident_split(arrays, where, device)
        return self._served[split, device]

    def train_dataloader(self) -> BatchLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> BatchLoader:
        return self._loader("valid", train=False)

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test", train=False)

    def valid_batches_for_search(self) -> Iterator[Batch]:
        """Endless training-size batches of the valid split, in a fresh order each pass: the architecture steps
        of a bi-level search (``lit/search.py``) draw from here, so they never see a train or test row."""
        loader = BatchLoader(self.splits["valid"], self.batch_size, shuffle=True, seed=self.seed + 1)
        for epoch in itertools.count():
            loader.set_epoch(epoch)
            yield from loader
