"""What a prepared dataset looks like: its fields, their vocabularies and its splits.

Every field is encoded to *local* ids in ``[0, vocab_size)``: id 0 is padding / missing, the last id
(``vocab_size - 1``) is out-of-vocabulary (values below ``min_count``, or unseen at valid/test time). The
embedding layer turns local ids into one shared id space by adding per-field offsets, so a single
``nn.Embedding`` serves every field.

Field kinds:

``categorical``
    one id per example, a column of ``{split}_ids.npy`` [N, F_scalar].
``numeric``
    one embedding row (id 1, 0 when missing) scaled by the field's value (OptInter's recipe); values travel
    in ``{split}_values.npy`` / the batch's ``values`` [B, F_scalar] (1.0 for categorical fields).
``multi``
    a set of ids per example (MovieLens genres, user tags), padded with 0 to ``max_len``.
``sequence``
    an ordered list of ids per example (a user's behaviour history, oldest first), padded with 0 at the end.

Multi-valued and sequence fields ("bags") are stored together in ``{split}_bags.npy`` [N, F_bag, L] with
``L`` the longest ``max_len``; they come after the scalar fields in ``FeatureMap.fields``. A bag field may
``share`` another field's vocabulary, e.g. the history of item ids shares the target item's ids (and so its
embedding rows). Cross-product features (``crosses.py``) are a separate layer: ``cross_fields`` /
``cross_pairs`` are filled in when a run asks for them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FieldKind = Literal["categorical", "numeric", "multi", "sequence"]
FIELD_KINDS = ("categorical", "numeric", "multi", "sequence")
BAG_KINDS = ("multi", "sequence")
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Field:
    name: str
    vocab_size: int  # including the padding id 0 and the OOV id vocab_size - 1
    kind: FieldKind = "categorical"
    max_len: int = 1  # bags: the padded length
    shares: str | None = None  # bags: the field whose vocabulary (and embedding rows) this one uses

    @property
    def oov_id(self) -> int:
        return self.vocab_size - 1

    @property
    def is_bag(self) -> bool:
        return self.kind in BAG_KINDS


@dataclass
class FeatureMap:
    """The schema of one prepared dataset, saved as ``feature_map.json`` beside its arrays."""

    dataset: str
    fields: list[Field]
    split_sizes: dict[str, int]
    has_values: bool = False  # whether `{split}_values.npy` exists (numeric fields scale their embedding)
    description: str = ""  # what the data really is, for report headers
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific facts (planted interactions, ...)
    cross_fields: list[Field] = field(default_factory=list)  # memorized crosses, one per pair (crosses.py)
    cross_pairs: list[tuple[int, int]] = field(default_factory=list)  # field indices of each cross

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        for i, f in enumerate(self.fields):
            if f.kind not in FIELD_KINDS:
                raise ValueError(f"{self.dataset}: field {f.name!r} has kind {f.kind!r}, not one of {FIELD_KINDS}")
            if f.is_bag and any(not g.is_bag for g in self.fields[i:]):
                raise ValueError(f"{self.dataset}: bag field {f.name!r} must come after every scalar field")
            if f.shares is not None and (f.shares not in names or self.fields[names.index(f.shares)].shares):
                raise ValueError(f"{self.dataset}: field {f.name!r} shares unknown or sharing field {f.shares!r}")

    @property
    def num_fields(self) -> int:
        """Fields a model sees, bags included (each pooled to one embedding by default)."""
        return len(self.fields)

    @property
    def scalar_fields(self) -> list[Field]:
        """The columns of ``{split}_ids.npy``, in order."""
        return [f for f in self.fields if not f.is_bag]

    @property
    def bag_fields(self) -> list[Field]:
        """The rows of ``{split}_bags.npy``'s second axis, in order."""
        return [f for f in self.fields if f.is_bag]

    @property
    def bag_len(self) -> int:
        """L of ``{split}_bags.npy`` [N, F_bag, L] (0 without bags)."""
        return max((f.max_len for f in self.bag_fields), default=0)

    @property
    def vocab_sizes(self) -> list[int]:
        return [f.vocab_size for f in self.fields]

    @property
    def offsets(self) -> np.ndarray:
        """Start of each field in the shared id space; a sharing field starts where its owner does. [F]"""
        own = np.array([0 if f.shares else f.vocab_size for f in self.fields], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(own)[:-1]]).astype(np.int64)
        index = {f.name: i for i, f in enumerate(self.fields)}
        return np.array([starts[index[f.shares]] if f.shares else s for f, s in zip(self.fields, starts, strict=True)])

    @property
    def total_vocab(self) -> int:
        """Rows of the shared embedding table (sharing fields add none)."""
        return int(sum(f.vocab_size for f in self.fields if not f.shares))

    @property
    def cross_offsets(self) -> np.ndarray:
        """Start of each cross in the crosses' own id space. [P]"""
        return np.concatenate([[0], np.cumsum([f.vocab_size for f in self.cross_fields])[:-1]]).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"] = [asdict(f) for f in self.fields]
        d["cross_fields"] = [asdict(f) for f in self.cross_fields]
        d["cross_pairs"] = [list(p) for p in self.cross_pairs]
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> FeatureMap:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureMap:
        """The inverse of ``to_dict`` (its json form)."""
        d = dict(d)
        d["fields"] = [Field(**f) for f in d["fields"]]
        d["cross_fields"] = [Field(**f) for f in d.get("cross_fields", [])]
        d["cross_pairs"] = [tuple(p) for p in d.get("cross_pairs", [])]
        return cls(**d)
