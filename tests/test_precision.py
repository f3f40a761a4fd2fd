"""``trainer.precision=bf16-mixed``: the matmuls in bfloat16 under autocast (configs/trainer/cpu.yaml). A run is still
a function of its seed and config, and it learns what the float32 run learns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import train_cli

SMALL = ("model=deepfm", "data=synthetic_criteo", "data.num_rows=8000", "data.batch_size=512", "seed=3")


def test_bf16_mixed_is_deterministic_and_learns_as_float32(tmp_path: Path) -> None:
    fp32 = train_cli(tmp_path / "fp32", *SMALL)
    first = train_cli(tmp_path / "bf16a", *SMALL, "trainer.precision=bf16-mixed")
    again = train_cli(tmp_path / "bf16b", *SMALL, "trainer.precision=bf16-mixed")
    for key in ("val/auc", "val/logloss", "test/auc", "test/logloss"):
        assert first[key] == again[key], key  # same seed and config on CPU: the same metrics, bf16 or not
    assert first["test/logloss"] != fp32["test/logloss"]  # the precision took effect
    assert first["test/auc"] > 0.6  # it learned (chance is 0.5)
    assert first["test/auc"] == pytest.approx(fp32["test/auc"], abs=0.01)
    assert first["test/logloss"] == pytest.approx(fp32["test/logloss"], abs=0.01)
