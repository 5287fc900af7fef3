"""Precompute on a 2-worker Dask LocalCluster: cached results equal in-process ones to float32 rounding (other
batches, processes and thread counts, see :mod:`rounding`), runs resume after an interruption to the same output
bit for bit (same chunks on the same workers), mismatched caches are refused, and load_zoo / compute_features
pick the cache up. Marked ``kernels``: ``make test`` runs these again under ``ATEN_CPU_CAPABILITY=default``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SAMPLE
from rounding import assert_accuracy_close, assert_rounding_close, network_terms

import wslviz as wv
from wslviz.cli import main
from wslviz.core.evaluation import evaluate, model_outputs
from wslviz.formats import save_zoo
from wslviz.represent import features as features_module
from wslviz.represent.features import FeatureError, compute_features, default_reference
from wslviz.scale.cache import (
    CACHE_ENV,
    CacheError,
    PrecomputeCache,
    beside_cache_path,
    cache_root,
    load_zoo,
    read_manifest,
    user_cache_path,
)
from wslviz.scale.precompute import precompute_zoo
from wslviz.understand.align import align_zoo

distributed = pytest.importorskip("distributed")

ROWS = 60
CHUNK = 13  # does not divide ROWS, nor line up with the library's internal batches
ALL = ("stats", "spectral", "functional", "aligned")


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Every test's per-user cache root is its own temporary folder (never the real ~/.cache)."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def zoo_path(tmp_path_factory, moons_zoo):
    # a slice of the bundled moons zoo: several models, several epochs each, with its task
    return save_zoo(moons_zoo.subset(np.arange(ROWS)), tmp_path_factory.mktemp("zoo") / "moons-slice")


@pytest.fixture(scope="module")
def full_cache(tmp_path_factory, zoo_path, client):
    out = tmp_path_factory.mktemp("cache") / "full"
    report = precompute_zoo(zoo_path, out, features=ALL, evaluate=True, client=client, chunk_size=CHUNK)
    assert report.complete and report.n_chunks == 5 and report.computed == 5 and report.skipped == 0
    return out


def _tables(cache) -> dict[str, pd.DataFrame]:
    c = PrecomputeCache(cache)
    out = {k: pd.DataFrame(c.features(k).values) for k in ALL}
    out["evaluation"] = c.evaluation()
    return out


def _assert_features_close(zoo, kind: str, got, expected) -> None:
    """Features of the same rows computed in other batches, processes or thread counts: equal to float32 rounding.
    stats, spectral and aligned sum at most P terms per value (a tensor's mean or norm, a layer's Gram matrix);
    functional runs the network, then a softmax over the classes."""
    terms = network_terms(zoo.arch) + zoo.arch.output_dim if kind == "functional" else zoo.n_params
    assert_rounding_close(got, expected, terms, msg=kind)


def _assert_evaluation_close(zoo, got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Evaluation tables of the same rows: rows equal, losses to float32 rounding, accuracies equal but for
    predictions whose two largest logits tie to rounding."""
    np.testing.assert_array_equal(got["row"], expected["row"])
    for split in ("train", "test"):
        x = zoo.task.split(split)[0]
        terms = network_terms(zoo.arch, len(x))
        assert_rounding_close(got[f"{split}_loss"], expected[f"{split}_loss"], terms, msg=split)
        assert_accuracy_close(got[f"{split}_acc"], expected[f"{split}_acc"], model_outputs(zoo.arch, zoo.weights, x),
                              terms)


@pytest.mark.kernels
def test_cached_results_equal_in_process(zoo_path, full_cache):
    zoo = load_zoo(zoo_path, cache=False)
    cache = PrecomputeCache(full_cache)
    assert cache.matches(zoo)
    for kind in ALL:
        cached = cache.features(kind)
        direct = features_module.feature_set(zoo, kind)
        assert cached.names == direct.names
        assert cached.values.shape == (ROWS, len(direct.names))
        _assert_features_close(zoo, kind, cached.values, direct.values)
    ref = default_reference(zoo)
    assert cache.parameters["reference"] == ref
    # the same permutations (a matching flips only where two assignments' costs tie to rounding), the same scales
    _assert_features_close(zoo, "aligned", cache.aligned(),
                           align_zoo(zoo.arch, zoo.weights.float(), zoo.weights[ref].float()))
    table = cache.evaluation()
    np.testing.assert_array_equal(table["row"], np.arange(ROWS))
    direct = {"row": np.arange(ROWS)}
    for split in ("train", "test"):
        result = evaluate(zoo.arch, zoo.task, zoo.weights, split)
        direct[f"{split}_loss"], direct[f"{split}_acc"] = result["loss"].numpy(), result["accuracy"].numpy()
    _assert_evaluation_close(zoo, table, pd.DataFrame(direct))
    # the chunk files are merged and removed; the manifest records the finished run
    manifest = read_manifest(full_cache)
    assert manifest["complete"] and not any((full_cache / "chunks").iterdir())
    assert manifest["chunks"] == [[0, 13], [13, 26], [26, 39], [39, 52], [52, 60]]


def test_interrupted_run_resumes_to_the_same_output(tmp_path, zoo_path, full_cache, client):
    out = tmp_path / "resumed"
    first = precompute_zoo(zoo_path, out, features=ALL, evaluate=True, client=client, chunk_size=CHUNK, max_chunks=2)
    assert (first.computed, first.skipped, first.complete) == (2, 0, False)
    assert not read_manifest(out)["complete"]
    with pytest.raises(CacheError, match="did not finish"):
        PrecomputeCache(out)
    # damage one finished chunk (a torn write from a killed process would look like this)
    damaged = sorted((out / "chunks").glob("stats-*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    second = precompute_zoo(zoo_path, out, features=ALL, evaluate=True, client=client)  # chunking from the manifest
    assert (second.computed, second.skipped, second.complete) == (4, 1, True)
    # bit for bit: the same chunks of the same zoo, computed by the same single-threaded workers
    expected, got = _tables(full_cache), _tables(out)
    for name in expected:
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True)
    third = precompute_zoo(zoo_path, out, features=ALL, evaluate=True, client=client)
    assert (third.computed, third.skipped, third.complete) == (0, 5, True)
    # a lost merged file is rebuilt
    (out / "spectral.parquet").unlink()
    fourth = precompute_zoo(zoo_path, out, features=ALL, evaluate=True, client=client)
    assert fourth.complete and fourth.computed == 5
    pd.testing.assert_frame_equal(_tables(out)["spectral"], expected["spectral"], check_exact=True)


@pytest.mark.kernels
def test_killed_run_resumes_to_the_same_output(tmp_path, zoo_path, full_cache, client):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "wslviz.cli", "precompute", str(zoo_path), "--out", str(out), "--features", "stats",
           "--evaluate", "--workers", "1", "--chunk-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while proc.poll() is None and not list((out / "chunks").glob("evaluation-*.parquet")):
            time.sleep(0.05)
    finally:  # kill the command and its local cluster (its own process group) as soon as one chunk is on disk
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not read_manifest(out)["complete"]
    report = precompute_zoo(zoo_path, out, features=("stats",), evaluate=True, client=client)
    assert report.complete and report.n_chunks == 30 and report.skipped >= 1 and report.computed >= 1
    assert report.computed + report.skipped == 30
    # chunks of 2 rows against the reference cache's 13: other batches, so equal to rounding
    expected, got, zoo = PrecomputeCache(full_cache), PrecomputeCache(out), load_zoo(zoo_path, cache=False)
    _assert_features_close(zoo, "stats", got.features("stats").values, expected.features("stats").values)
    _assert_evaluation_close(zoo, got.evaluation(), expected.evaluation())
    assert not list((out / "chunks").iterdir())


def test_mismatched_cache_is_refused(tmp_path, zoo_path, full_cache, moons_zoo, client):
    with pytest.raises(CacheError, match="other parameters.*features"):
        precompute_zoo(zoo_path, full_cache, features=("stats",), client=client)
    with pytest.raises(CacheError, match="other parameters.*reference"):
        precompute_zoo(zoo_path, full_cache, features=ALL, evaluate=True, align_to=0, client=client)
    with pytest.raises(CacheError, match="chunks of 13 rows"):
        precompute_zoo(zoo_path, full_cache, features=ALL, evaluate=True, chunk_size=7, client=client)
    other = save_zoo(moons_zoo.subset(np.arange(1, ROWS + 1)), tmp_path / "other")
    with pytest.raises(CacheError, match="another zoo"):
        precompute_zoo(other, full_cache, features=ALL, evaluate=True, client=client)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(CacheError, match="not a precompute cache"):
        precompute_zoo(zoo_path, foreign, client=client)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # a cache attached to another zoo is never used for it
    zoo = load_zoo(other, cache=full_cache)
    assert zoo.cache is not None and wv.open_cache(zoo) is None
    np.testing.assert_array_equal(compute_features(zoo, "stats"), features_module.weight_stats(zoo.arch, zoo.weights))


def test_kinds_that_are_not_per_checkpoint_are_refused(zoo_path, client):
    for kind in ("flat", "learned", "bogus"):
        with pytest.raises(FeatureError, match=f"cannot precompute {kind}"):
            precompute_zoo(zoo_path, None, features=(kind,), client=client)


def _listing(folder) -> dict[str, int]:
    return {str(f.relative_to(folder)): f.stat().st_size for f in sorted(folder.rglob("*"))}


def test_load_zoo_picks_up_the_cache(tmp_path, zoo_path, full_cache, client, monkeypatch, user_cache):
    assert load_zoo(zoo_path).cache is None
    # a cache named explicitly
    zoo = load_zoo(zoo_path, cache=full_cache)
    assert zoo.cache.path == full_cache
    expected = PrecomputeCache(full_cache)

    def fail(*args, **kwargs):
        raise AssertionError("computed although the cache holds it")

    with monkeypatch.context() as m:
        for name in ("weight_stats", "spectral_features", "functional_features", "aligned_weights"):
            m.setattr(features_module, name, fail)
        seen = []
        for kind in ALL:
            values = compute_features(zoo, kind, progress=lambda d, t: seen.append((d, t)))
            np.testing.assert_array_equal(values, expected.features(kind).values)
        assert seen[-1] == (ROWS, ROWS)
        np.testing.assert_array_equal(compute_features(zoo, "aligned", reference=default_reference(zoo)),
                                      expected.features("aligned").values)
        # other options than the cache's, or a subset of the zoo: computed, not read back
        with pytest.raises(AssertionError, match="computed although"):
            compute_features(zoo, "spectral", min_singular_values=2)
        with pytest.raises(AssertionError, match="computed although"):
            compute_features(zoo, "functional", n_probe=16)
        with pytest.raises(AssertionError, match="computed although"):
            compute_features(zoo.subset(np.arange(10)), "stats")
    # by default the CLI writes to the per-user cache $WSLVIZ_CACHE/<fingerprint> (here on an existing
    # cluster, --scheduler), and nothing into the zoo's folder
    before = _listing(zoo_path)
    address = client.scheduler.address
    assert main(["precompute", str(zoo_path), "--features", "stats", "--scheduler", address, "--chunk-size", "25"]) == 0
    assert _listing(zoo_path) == before and not beside_cache_path(zoo_path).exists()
    user = user_cache_path(zoo.fingerprint)
    assert user == user_cache / zoo.fingerprint
    assert load_zoo(zoo_path).cache.path == user
    from wslviz.ui import open_zoo  # the app's loader (cached by path, modification time and cache manifests)

    assert open_zoo(zoo_path).cache.path == user
    assert json.loads((user / "manifest.json").read_text())["chunks"] == [[0, 25], [25, 50], [50, 60]]
    _assert_features_close(zoo, "stats", PrecomputeCache(user).features("stats").values,  # chunks of 25, not 13
                           expected.features("stats").values)
    # keyed by content: a copy of the zoo elsewhere finds the same cache
    copy = shutil.copytree(zoo_path, tmp_path / "copy")
    assert load_zoo(copy).cache.path == user
    # a cache beside the zoo (where earlier versions wrote it) is still read; one made for another zoo
    # does not hide the per-user cache
    beside = shutil.copytree(user, beside_cache_path(copy))
    assert load_zoo(copy).cache.path == beside
    manifest = json.loads((beside / "manifest.json").read_text())
    (beside / "manifest.json").write_text(json.dumps({**manifest, "zoo_fingerprint": "0" * 16}))
    assert load_zoo(copy).cache.path == user
    # --out still writes where it is told
    out = tmp_path / "explicit"
    assert main(["precompute", str(copy), "--out", str(out), "--features", "stats", "--scheduler", address]) == 0
    assert PrecomputeCache(out).matches(load_zoo(copy)) and load_zoo(copy, cache=out).cache.path == out


def test_the_cache_root_is_per_user(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "root"))
    assert cache_root() == tmp_path / "root" and user_cache_path("abc") == tmp_path / "root" / "abc"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "wslviz"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "wslviz"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cache_root() == tmp_path / "home" / "Library" / "Caches" / "wslviz"


def test_cli_reports_a_refused_cache(tmp_path, zoo_path, full_cache, client, capsys):
    code = main(["precompute", str(zoo_path), "--out", str(full_cache), "--features", "stats",
                 "--scheduler", client.scheduler.address])
    assert code == 1
    assert "other parameters" in capsys.readouterr().err


def _module_terms(arch, n_samples: int) -> int:
    """Terms summed along a forward pass of a module architecture, bounded by its parameter count (every weight
    enters one sum once; normalisations and attention add fewer terms than their inputs' weights), plus the loss's
    sums over the samples (see :func:`rounding.network_terms` for sequential networks)."""
    return arch.n_params + n_samples


@pytest.mark.parametrize("name", ["digits-resnet", "tiny-transformer"])
def test_precompute_command_runs_on_module_architectures(tmp_path, name, client, capsys):
    zoo = load_zoo(SAMPLE / name).subset(np.arange(6))
    path = save_zoo(zoo, tmp_path / name)
    out = tmp_path / "cache"
    code = main(["precompute", str(path), "--out", str(out), "--features", "stats,aligned", "--evaluate",
                 "--chunk-size", "4", "--device", "cpu", "--scheduler", client.scheduler.address])
    assert code == 0 and "complete" in capsys.readouterr().out
    zoo = load_zoo(path, cache=False)
    cache = PrecomputeCache(out)
    assert cache.matches(zoo) and read_manifest(out)["chunks"] == [[0, 4], [4, 6]]
    assert_rounding_close(cache.features("stats").values, features_module.feature_set(zoo, "stats").values,
                          zoo.n_params, msg="stats")
    ref = zoo.weights[cache.parameters["reference"]].float()
    assert_rounding_close(cache.aligned(), align_zoo(zoo.arch, zoo.weights.float(), ref, task=zoo.task),
                          zoo.n_params, msg="aligned")
    # the cached aligned features read back, named from the module architecture stored with the cache (this used
    # to rebuild any cached architecture as a sequential spec and fail on module zoos)
    aligned = cache.features("aligned")
    assert aligned.names == features_module.feature_names(zoo, "aligned")
    np.testing.assert_array_equal(aligned.values, cache.aligned().double().numpy())
    attached = load_zoo(path, cache=out)
    assert attached.cache is not None
    np.testing.assert_array_equal(features_module.compute_features(attached, "aligned"), aligned.values)
    table = cache.evaluation()
    for split in ("train", "test"):
        x = zoo.task.split(split)[0]
        direct = evaluate(zoo.arch, zoo.task, zoo.weights, split)
        terms = _module_terms(zoo.arch, len(x))
        assert_rounding_close(table[f"{split}_loss"], direct["loss"], terms, msg=split)
        assert_accuracy_close(table[f"{split}_acc"], direct["accuracy"], model_outputs(zoo.arch, zoo.weights, x),
                              terms)


def test_precompute_refuses_a_device_this_machine_lacks(zoo_path, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["precompute", str(zoo_path), "--out", str(tmp_path / "c"), "--evaluate", "--device", "cuda"])
    assert code == 1 and "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # refused before anything starts or is written
    with pytest.raises(ValueError, match="not a device"):
        precompute_zoo(zoo_path, tmp_path / "c", evaluate=True, device="gpu-please")


def test_precompute_on_cuda_equals_cpu(tmp_path, zoo_path, full_cache, client):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "cuda"
    precompute_zoo(zoo_path, out, features=ALL, evaluate=True, client=client, chunk_size=CHUNK, device="cuda")
    zoo = load_zoo(zoo_path, cache=False)
    _assert_evaluation_close(zoo, PrecomputeCache(out).evaluation(), PrecomputeCache(full_cache).evaluation())
