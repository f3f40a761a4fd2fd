"""OptInter Figures 5 and 6 (report/architecture_figures.py): the MI of the pairs each method chose, from
hand-made artifacts on small ``memorize`` stand-ins, against ``pair_mutual_information`` directly."""

from __future__ import annotations

import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ctrlab.data import cache
from ctrlab.models.optinter import OPTIONS, SPACE
from ctrlab.report.architecture_figures import write_mi_by_method, write_mi_heatmap
from ctrlab.report.mutual_information import pair_mutual_information
from ctrlab.search.artifact import SCHEMA_VERSION, Artifact, Provenance, space_record, write_artifact
from ctrlab.search.space import SearchSpace
from tests.helpers import synthetic_source

STANDIN = dict(num_rows=4000, num_fields=6, min_vocab=4, max_vocab=12, num_pairs=3, num_memorized=1,
               num_triples=0, mechanism="memorize", min_count=5)  # fmt: skip


def _standin(root: Path, name: str, seed: int) -> Path:
    return cache.prepare(synthetic_source(name=name, seed=seed, **STANDIN), root)


def _artifact(path: Path, folder: Path, methods: list[str], seed: int) -> Path:
    """An artifact of OptInter's space over every field pair of the cache at ``folder``, choosing ``methods``."""
    fm, _ = cache.load(folder)
    names = [f.name for f in fm.fields]
    units = tuple(f"{names[i]}×{names[j]}" for i, j in combinations(range(len(names)), 2))
    artifact = Artifact(
        schema_version=SCHEMA_VERSION,
        spaces=[space_record(SearchSpace(SPACE, units, OPTIONS), methods, None)],
        provenance=Provenance(
            kind="random",
            model={"config": "optinter", "target": "ctrlab.models.optinter.OptInter"},
            data={"cache": folder.name, "dataset": fm.dataset, "fields": names},
            seed=seed,
            config={"paths": {"cache_dir": str(folder.parents[1])}, "data": {"source": {"name": fm.dataset}}},
        ),
    )
    return write_artifact(path, artifact)


def _direct_mi(folder: Path) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Every pair's MI on the train split, straight from eq. 21's function."""
    fm, splits = cache.load(folder)
    pairs = list(combinations(range(fm.num_fields), 2))
    return pairs, pair_mutual_information(np.asarray(splits["train"].ids), np.asarray(splits["train"].labels), pairs)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Two stand-ins (a: two seeds' artifacts, b: one) with known methods: on a, seed 1 memorizes the planted
    memorized pair, factorizes the planted factorized ones and leaves the rest naive; seed 2 cycles the methods."""
    root = tmp_path_factory.mktemp("mifig")
    folder_a, folder_b = _standin(root / "cache", "mi_a", 0), _standin(root / "cache", "mi_b", 1)
    fm_a, _ = cache.load(folder_a)
    kinds = {tuple(p): k for p, k in zip(fm_a.extra["planted"]["pairs"], fm_a.extra["planted"]["kinds"], strict=True)}
    pairs = list(combinations(range(fm_a.num_fields), 2))
    truth = [{"memorized": "memorize", "factorized": "factorize"}.get(kinds.get(p, ""), "naive") for p in pairs]
    cycle = [OPTIONS[k % 3] for k in range(len(pairs))]
    only_two = ["memorize" if k < 5 else "naive" for k in range(len(pairs))]  # factorize takes no pair
    artifacts = {
        "a1": _artifact(root / "a1" / "architecture.json", folder_a, truth, 1),
        "a2": _artifact(root / "a2" / "architecture.json", folder_a, cycle, 2),
        "b1": _artifact(root / "b1" / "architecture.json", folder_b, only_two, 1),
    }
    methods = {"a1": truth, "a2": cycle, "b1": only_two}
    return root, artifacts, methods, {"mi_a": folder_a, "mi_b": folder_b}


def test_figure5_groups_the_pairs_by_method_and_averages_over_seeds(searched):
    root, artifacts, methods, folders = searched
    png = write_mi_by_method(list(artifacts.values()), root / "out", "smoke")
    assert png == root / "out" / "figure5.smoke.png" and png.stat().st_size > 1000
    table = pl.read_csv(root / "out" / "figure5.smoke.csv")
    assert table.columns == ["dataset", "method", "runs", "pairs", "mi_mean", "mi_std"]
    assert table.select("dataset", "method").rows() == [("mi_a", m) for m in OPTIONS] + [("mi_b", m) for m in OPTIONS]
    _, mi_a = _direct_mi(folders["mi_a"])
    _, mi_b = _direct_mi(folders["mi_b"])

    def mean(mi: np.ndarray, run: str, method: str) -> float:
        return mi[np.array(methods[run]) == method].mean()

    for method in OPTIONS:
        row = table.filter((pl.col("dataset") == "mi_a") & (pl.col("method") == method)).row(0, named=True)
        per_seed = [mean(mi_a, "a1", method), mean(mi_a, "a2", method)]
        assert row["runs"] == 2
        assert row["pairs"] == pytest.approx((methods["a1"].count(method) + methods["a2"].count(method)) / 2)
        assert row["mi_mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
        assert row["mi_std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
    b = {r["method"]: r for r in table.filter(pl.col("dataset") == "mi_b").iter_rows(named=True)}
    assert b["memorize"]["mi_mean"] == pytest.approx(mean(mi_b, "b1", "memorize"), abs=1e-12)
    assert b["memorize"]["runs"] == 1 and b["memorize"]["mi_std"] is None  # one seed: no spread
    assert b["factorize"]["runs"] == 0 and b["factorize"]["pairs"] == 0 and b["factorize"]["mi_mean"] is None
    # on the stand-in the planted memorized pair carries more information than the no-effect (naive) pairs
    assert mean(mi_a, "a1", "memorize") > mean(mi_a, "a1", "naive")


def test_figure6_lists_every_pair_with_its_mi_method_and_planted_kind(searched):
    root, artifacts, methods, folders = searched
    png = write_mi_heatmap(artifacts["a1"], root / "out6", "smoke", "figure6.mi_a")
    assert png == root / "out6" / "figure6.mi_a.png" and png.stat().st_size > 1000
    table = pl.read_csv(root / "out6" / "figure6.mi_a.csv")
    assert table.columns == ["field_a", "field_b", "mi", "method", "planted"]
    pairs, mi = _direct_mi(folders["mi_a"])
    fm, _ = cache.load(folders["mi_a"])
    planted = dict(zip(map(tuple, fm.extra["planted"]["pairs"]), fm.extra["planted"]["kinds"], strict=True))
    assert table.select("field_a", "field_b").rows() == [(f"f{i}", f"f{j}") for i, j in pairs]
    np.testing.assert_allclose(table["mi"].to_numpy(), mi, rtol=0, atol=1e-12)
    assert table["method"].to_list() == methods["a1"]
    assert table["planted"].to_list() == [planted.get(p) for p in pairs]


def test_a_missing_cache_is_named_with_the_artifact(searched, tmp_path):
    root, artifacts, _, folders = searched
    gone = tmp_path / "cache" / "mi_b" / folders["mi_b"].name
    shutil.copytree(folders["mi_b"], gone)
    artifact = _artifact(tmp_path / "run" / "architecture.json", gone, ["naive"] * 15, 3)
    shutil.rmtree(gone)
    with pytest.raises(FileNotFoundError, match=rf"artifact {artifact} was searched on the data cache {gone}, "):
        write_mi_by_method([artifacts["a1"], artifact], tmp_path / "out", "smoke")
    assert not (tmp_path / "out").exists()  # refused before any figure was written
    with pytest.raises(FileNotFoundError, match=str(gone)):
        write_mi_heatmap(artifact, tmp_path / "out", "smoke", "figure6")


def test_an_artifact_without_optinter_pairs_is_refused(searched, tmp_path):
    _, _, _, folders = searched
    path = _artifact(tmp_path / "architecture.json", folders["mi_a"], ["naive"] * 15, 1)
    text = path.read_text().replace(f'"{SPACE}"', '"interaction"')
    path.write_text(text)
    with pytest.raises(ValueError, match=r"has no 'pair_method' space \(it has \['interaction'\]\)"):
        write_mi_heatmap(path, tmp_path, "smoke", "figure6")
