"""What a prepared dataset looks like: its fields, their vocabularies and its splits.

Every categorical field is encoded to *local* ids in ``[0, vocab_size)``: id 0 is padding / missing, the
last id (``vocab_size - 1``) is out-of-vocabulary (values below ``min_count``, or unseen at valid/test time).
The embedding layer turns local ids into one shared id space by adding per-field offsets, so a single
``nn.Embedding`` serves every field.

A *numeric* field (OptInter's recipe) has one embedding row (id 1, 0 when missing) scaled by the field's
value; its values travel in the batch as ``values`` ([B, F], 1.0 for categorical fields).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

FieldKind = Literal["categorical", "numeric"]
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Field:
    name: str
    vocab_size: int  # including the padding id 0 and the OOV id vocab_size - 1
    kind: FieldKind = "categorical"

    @property
    def oov_id(self) -> int:
        return self.vocab_size - 1


@dataclass
class FeatureMap:
    """The schema of one prepared dataset, saved as ``feature_map.json`` beside its arrays."""

    dataset: str
    fields: list[Field]
    split_sizes: dict[str, int]
    has_values: bool = False  # whether `{split}_values.npy` exists (numeric fields scale their embedding)
    description: str = ""  # what the data really is, for report headers
    extra: dict[str, Any] = field(default_factory=dict)  # dataset-specific facts (planted interactions, ...)

    @property
    def num_fields(self) -> int:
        return len(self.fields)

    @property
    def vocab_sizes(self) -> list[int]:
        return [f.vocab_size for f in self.fields]

    @property
    def offsets(self) -> np.ndarray:
        """Start of each field in the shared id space. [F]"""
        return np.concatenate([[0], np.cumsum(self.vocab_sizes)[:-1]]).astype(np.int64)

    @property
    def total_vocab(self) -> int:
        return int(sum(self.vocab_sizes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fields"] = [asdict(f) for f in self.fields]
        return d

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> FeatureMap:
        d = json.loads(Path(path).read_text())
        d["fields"] = [Field(**f) for f in d["fields"]]
        return cls(**d)
