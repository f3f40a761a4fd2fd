"""Raw files in real datasets' formats, made up from scratch, for tests and reader benchmarks.

Not part of the ``ctrlab`` package: the tests import it as ``tests.rawgen``, ``benchmarks/preprocess.py``
after putting the repository root on ``sys.path``.

``write_criteo_like`` writes the Criteo Kaggle ``train.txt`` format (tab-separated, no header, label,
I1..I13, C1..C26) with the quirks a reader must survive: empty cells, negative and very large counts,
long-tailed 8-hex categorical values (so that ``min_count`` makes OOV ids) and ~25% clicks that depend on
the features (so that a model can learn something). None of it comes from the real data.

``benchmark_recipe`` times a ``CriteoSource`` build end to end (parse, count, encode, write the cache) on
such a file, then optionally the cross-product layer on top of it (``crosses.py``), and reports rows/s and
the peak resident memory of each.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_module
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

NUM_INT, NUM_CAT = 13, 26
CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # the repository's Hydra configs
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SHIFTS = np.arange(28, -1, -4, dtype=np.uint64)


def _hex8(values: np.ndarray) -> pl.Series:
    """uint32-range ints [N] -> their 8-digit lower-case hex strings [N] (vectorised)."""
    digits = (values.astype(np.uint64)[:, None] >> _SHIFTS) & 0xF  # [N, 8]
    return pl.Series(np.ascontiguousarray(_HEX[digits]).view("S8").ravel()).cast(pl.String)


def _mix(x: np.ndarray, salt: int) -> np.ndarray:
    """A cheap integer hash to uint32 (a bijection of x mod 2^32 for a fixed salt). [N] -> [N]"""
    h = (x.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(salt * 0x85EBCA77 + 0x165667B1)) & np.uint64(
        0xFFFFFFFF
    )
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & np.uint64(0xFFFFFFFF)
    return h ^ (h >> np.uint64(12))


def _field_params(seed: int) -> dict[str, np.ndarray]:
    """Per-field shapes, fixed by ``seed`` so that every chunk of a file shares them."""
    rng = np.random.default_rng([seed, 1_000_003])
    return {
        "cat_vocab": np.exp(rng.uniform(np.log(4), np.log(200_000), NUM_CAT)).astype(np.int64),
        "cat_missing": np.where(rng.random(NUM_CAT) < 0.6, 0.0, rng.uniform(0.01, 0.45, NUM_CAT)),
        "int_missing": rng.uniform(0.0, 0.45, NUM_INT),
        "int_mu": rng.uniform(0.0, 3.0, NUM_INT),
        "int_sigma": rng.uniform(0.5, 2.0, NUM_INT),
        "cat_weight": rng.uniform(0.0, 1.2, NUM_CAT) * (rng.random(NUM_CAT) < 0.5),
        "int_weight": rng.normal(0.0, 0.3, NUM_INT),
    }


def _chunk(num_rows: int, seed: int, index: int, params: dict[str, np.ndarray]) -> pl.DataFrame:
    """``num_rows`` raw rows as 40 string columns (None = empty cell)."""
    rng = np.random.default_rng([seed, index])
    logit = np.zeros(num_rows)
    cols: dict[str, pl.Series] = {}

    ints = []
    for f in range(NUM_INT):  # a loop over the 13 + 26 fields, not over rows
        v = np.floor(np.exp(rng.normal(params["int_mu"][f], params["int_sigma"][f], num_rows))).astype(np.int64) - 1
        if f == 1:  # like Criteo's I2: a few small negative counts
            v = np.where(rng.random(num_rows) < 0.08, -rng.integers(1, 4, num_rows), v)
        if f == 4:  # like Criteo's I5: very large counts
            v = np.where(rng.random(num_rows) < 0.05, rng.integers(10**5, 3 * 10**7, num_rows), v)
        missing = rng.random(num_rows) < params["int_missing"][f]
        z = np.log1p(np.maximum(v, 0))
        logit += params["int_weight"][f] * np.where(missing, 0.0, (z - z.mean()) / (z.std() + 1e-9))
        ints.append(pl.Series(f"I{f + 1}", v).cast(pl.String).scatter(np.flatnonzero(missing), None))
    for f in range(NUM_CAT):
        vocab = params["cat_vocab"][f]
        rank = np.floor(np.exp(rng.random(num_rows) * np.log(vocab + 1.0))).astype(np.int64) - 1  # ~ 1/(r+1)
        missing = rng.random(num_rows) < params["cat_missing"][f]
        # a fixed pseudo-random effect per value: the same hex value always pushes the click rate one way
        effect = (_mix(rank, 7919 * f + seed).astype(np.float64) / 2.0**32 - 0.5) * 2.0 * params["cat_weight"][f]
        logit += np.where(missing, 0.0, effect)
        cols[f"C{f + 1}"] = _hex8(_mix(rank, f + 31 * seed)).scatter(np.flatnonzero(missing), None)
    # ~25% clicks: the bias that gives mean sigmoid(b + z) = 0.25 for z ~ N(0, s^2) (probit approximation)
    s = logit.std()
    bias = np.log(0.25 / 0.75) * np.sqrt(1.0 + np.pi * s**2 / 8.0)
    labels = (rng.random(num_rows) < 1.0 / (1.0 + np.exp(-(logit + bias)))).astype(np.int8)
    return pl.DataFrame([pl.Series("label", labels).cast(pl.String), *ints, *cols.values()])


def write_criteo_like(path: str | Path, num_rows: int, seed: int, chunk_rows: int = 250_000) -> Path:
    """Write ``num_rows`` lines of made-up data in the raw Criteo ``train.txt`` format to ``path``.

    Deterministic in ``(num_rows, seed, chunk_rows)``. About 1M rows per few seconds; memory is bounded by
    ``chunk_rows``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = _field_params(seed)
    with path.open("wb") as fh:
        for index, start in enumerate(range(0, num_rows, chunk_rows)):
            df = _chunk(min(chunk_rows, num_rows - start), seed, index, params)
            df.write_csv(fh, separator="\t", include_header=False, quote_style="never", null_value="")
    return path


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MiB. Linux's VmHWM where there is one: ``ru_maxrss`` also
    counts the parent's memory at the fork that preceded exec, which would blur a child's own peak."""
    try:
        for row in Path("/proc/self/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_rss() -> None:
    """Restart the VmHWM high-water mark (Linux >= 4.0), so the next phase's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _build_and_measure(recipe: str, path: str, cache_root: str, crosses: bool, queue: Any) -> None:
    """Child process body: build one cache with the recipe's config file (configs/data/criteo*.yaml), then
    its crosses (``data.crosses``), and report time and memory. A fresh process, so the peak RSS is the
    build's own, not the file writer's."""
    import logging

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from ctrlab.data import cache
    from ctrlab.data.crosses import CrossSpec, prepare_crosses

    logging.basicConfig(level=logging.WARNING)
    data = {"dynint": "criteo", "optinter": "criteo_optinter"}[recipe]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={data}", f"data.source.path='{path}'", "data.num_rows=null"])
    source = instantiate(cfg.data.source)
    baseline = _peak_rss_mb()
    t0, cpu0 = time.perf_counter(), time.process_time()
    folder = cache.prepare(source, cache_root)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    fm = cache.load(folder)[0]
    result = {
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mb": _peak_rss_mb(),
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mb": baseline,
        "chunk_rows": source.chunk_rows,
        "split_sizes": fm.split_sizes,
        "total_vocab": fm.total_vocab,
    }
    if crosses:
        spec = CrossSpec(pairs=cfg.data.crosses.pairs, min_count=cfg.data.crosses.min_count)
        _reset_peak_rss()
        t0 = time.perf_counter()
        cross_folder = prepare_crosses(folder, spec)
        result["crosses_s"] = time.perf_counter() - t0
        result["crosses_peak_rss_mb"] = _peak_rss_mb()
        result["num_crosses"] = len(spec.resolve(fm))
        result["crosses_gb"] = sum(f.stat().st_size for f in cross_folder.glob("*.npy")) / 2**30
    queue.put(result)


def benchmark_recipe(recipe: str, num_rows: int, workdir: Path, seed: int = 0, crosses: bool = False) -> dict[str, Any]:
    """Generate a ``num_rows`` Criteo-like file in ``workdir`` (kept and reused across calls), build the
    ``recipe`` cache from scratch (configs/data/criteo.yaml or criteo_optinter.yaml) in a fresh process and
    return its throughput and peak memory; with ``crosses``, build the recipe's cross features too and add
    ``crosses_s``, ``crosses_peak_rss_mb`` (the crosses' own peak where Linux can reset it), ``num_crosses`` and
    ``crosses_gb`` (their size on disk).

    Returns ``{"recipe", "num_rows", "file_mb", "generate_s", "build_s", "rows_per_s", "cpu_s",
    "peak_rss_mb", "baseline_rss_mb", "chunk_rows", ...}``: ``build_s`` is wall time of the whole build
    (parse, count, encode, write and check the cache), ``cpu_s`` its CPU time over all threads,
    ``peak_rss_mb`` the build process's high-water resident set (VmHWM; ``ru_maxrss`` off Linux),
    ``baseline_rss_mb`` the same just before the build (interpreter + imports), ``ru_maxrss_mb`` what
    ``resource.getrusage`` says (the same, or more when the parent was bigger at the fork).
    """
    workdir = Path(workdir)
    raw = workdir / f"criteo_like_{num_rows}_{seed}.txt"
    generate_s = 0.0
    if not raw.exists():
        t0 = time.perf_counter()
        write_criteo_like(workdir / f".{raw.name}.part", num_rows, seed).rename(raw)
        generate_s = time.perf_counter() - t0
    cache_root = workdir / f"cache_{recipe}"
    shutil.rmtree(cache_root, ignore_errors=True)  # time a build, never a cache hit
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_build_and_measure, args=(recipe, str(raw), str(cache_root), crosses, queue))
    proc.start()
    while True:  # a child that dies (out of memory, say) never answers: don't wait for it forever
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the {recipe} build process died (exit code {proc.exitcode})") from None
    proc.join()
    shutil.rmtree(cache_root, ignore_errors=True)
    return {
        "recipe": recipe,
        "num_rows": num_rows,
        "file_mb": raw.stat().st_size / 2**20,
        "generate_s": generate_s,
        "build_s": result["seconds"],
        "rows_per_s": num_rows / result["seconds"],
        **{k: v for k, v in result.items() if k != "seconds"},
    }
