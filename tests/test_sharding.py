"""Shard specifications, the token-balanced partition, manifests, the background writer and model fingerprints."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from _checkpoints import random_dynamics_model

from seqdance.errors import SeqdanceError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.predict import plan_prediction_batches
from seqdance.inference.sharding import (
    Shard,
    ShardError,
    complete_run,
    input_cost,
    parse_shard,
    partition,
    read_manifest,
    resolve_shard,
    run_is_complete,
    shard_units,
    write_manifest,
)
from seqdance.inference.writer import BackgroundWriter, Throughput


@pytest.mark.parametrize(("text", "message"), [
    ("3/2", "--shard 3/2: the shard index is 0-based and must lie in 0..1, got 3"),
    ("2/2", "must lie in 0..1, got 2"),
    ("0/0", "--shard 0/0: the number of shards must be at least 1, got 0"),
    ("-1/4", "must lie in 0..3, got -1"),
    ("1of4", "write it i/N"),
    ("", "write it i/N"),
    ("0/99999999999", "the number of shards must be at most 1,000,000, got 99,999,999,999"),
    ("0/1000000000000000000000", "must be at most 1,000,000"),
    ("0/" + "9" * 400, "write it i/N"),  # no integer of 400 digits is parsed at all
])
def test_bad_shard_is_one_clear_line(text, message):
    with pytest.raises(ShardError) as info:
        parse_shard(text)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, SeqdanceError) and isinstance(info.value, ValueError)


def test_shard_from_the_option_and_from_torchrun():
    assert parse_shard(" 2 / 5 ") == Shard(2, 5) and Shard(2, 5).name == "shard-2-of-5"
    assert resolve_shard(None, env={}) is None
    assert resolve_shard("1/3", env={}) == Shard(1, 3)
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    assert resolve_shard(None, env=torchrun) == Shard(1, 2)
    # an array task of a job whose every task runs torchrun: task 2 of 3, rank 1 of 2 -> shard 5 of 6
    assert resolve_shard("2/3", env=torchrun) == Shard(5, 6)
    assert resolve_shard("2/3", env={"RANK": "0", "WORLD_SIZE": "1"}) == Shard(2, 3)
    with pytest.raises(ShardError, match=r"RANK=3 does not lie in 0\.\.WORLD_SIZE-1"):
        resolve_shard(None, env={"RANK": "3", "WORLD_SIZE": "2"})


def test_partition_is_deterministic_balanced_and_complete():
    import random

    rng = random.Random(0)
    costs = [rng.randint(1, 1000) for _ in range(200)]
    keys = [f"p{i}" for i in range(200)]
    for n in (1, 2, 3, 7):
        shards = partition(costs, keys, n)
        assert sorted(u for s in shards for u in s) == list(range(200))
        assert all(s == sorted(s) for s in shards)
        loads = [sum(costs[u] for u in s) for s in shards]
        assert max(loads) - min(loads) <= max(costs)  # greedy LPT: within one unit of each other
        assert shards == partition(costs, keys, n)
    # ties broken by key, not by position: reordering the units gives the same sets
    assert partition([5, 5, 5, 5], ["d", "c", "b", "a"], 2) == [[1, 3], [0, 2]]
    # a shard may own nothing when there are fewer units than shards
    assert partition([3.0], ["x"], 3) == [[0], [], []]
    # one shard's units are found without listing a million shards (memory grows with the units, not N)
    for n in (2, 7):
        assert [shard_units(costs, keys, Shard(i, n)) for i in range(n)] == partition(costs, keys, n)
    assert shard_units([3.0, 1.0], ["a", "b"], Shard(999_999, 1_000_000)) == []
    assert shard_units([3.0, 1.0], ["a", "b"], Shard(1, 1_000_000)) == [1]


def test_cost_counts_tokens_not_records():
    # a 1,000-token protein weighs more than ten 100-token ones, more so when pair maps are computed
    assert input_cost(1000, quadratic=False) > 10 * input_cost(100, quadratic=False)
    assert input_cost(1000, quadratic=True) / input_cost(100, quadratic=True) > 50
    seqs = ["M" * 500, "A" * 20, "C" * 20, "D" * 300, "E" * 50]
    plan = plan_prediction_batches(seqs, max_tokens_per_batch=600, pairs=False)
    assert sorted(i for unit in plan for i in unit.members) == list(range(5))
    assert plan[0].members == (0,)  # the longest first
    shards = partition([u.cost(quadratic=False) for u in plan], [str(u.members[0]) for u in plan], 2)
    assert [sorted(i for u in s for i in plan[u].members) for s in shards] == [[0], [1, 2, 3, 4]]


def test_long_sequences_are_units_of_their_own():
    plan = plan_prediction_batches(["A" * 30, "C" * 120, "D" * 10], window=50, max_tokens_per_batch=4096)
    windowed = [u for u in plan if u.windowed]
    assert [u.members for u in windowed] == [(1,)] and len(windowed[0].inputs) > 1
    assert [u.members for u in plan if not u.windowed] == [(0, 2)]


def _manifest(run_key: str, model: str, items: list, complete: bool) -> dict:
    return {"command": "predict", "n_items": 3, "run_key": run_key, "run": {"model": model}, "expect": {},
            "failures": {}, "complete": complete, "items": [[i, name, name, {}] for i, name in items]}


def test_manifests_name_what_does_not_fit(tmp_path):
    folder = tmp_path / "shards"
    write_manifest(folder, Shard(0, 2), _manifest("A", "m1", [(0, "a"), (2, "c")], True))
    with pytest.raises(ShardError, match=r"shard\(s\) 1/2 not run yet"):
        complete_run(folder)
    write_manifest(folder, Shard(1, 2), _manifest("A", "m1", [(1, "b")], False))
    assert not run_is_complete(folder, "A", 2)
    with pytest.raises(ShardError, match=r"shard\(s\) 1/2 did not finish"):
        complete_run(folder)
    write_manifest(folder, Shard(1, 2), _manifest("A", "m1", [(1, "b")], True))
    assert run_is_complete(folder, "A", 2) and not run_is_complete(folder, "B", 2)
    assert [m["shard"] for m in complete_run(folder, "predict")] == [0, 1]
    write_manifest(folder, Shard(1, 2), _manifest("B", "m2", [(1, "b")], True))
    with pytest.raises(ShardError) as info:
        complete_run(folder)
    assert "mixes shards of different runs: shard-1-of-2.json differs from shard-0-of-2.json in model" in str(
        info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", "not a shard manifest (a JSON list, not an object)"),
    ('{"n_shards": "x"}', "not a shard manifest of this seqdance version (format None"),
    ('{"format": 2, "command": "predict", "n_shards": "x"}', "'run_key' is None, expected str"),
    ("{", "unreadable shard manifest"),
    ("", "unreadable shard manifest"),
])
def test_manifest_of_the_wrong_shape_is_one_line(tmp_path, text, message):
    """Valid JSON of another shape, or no JSON at all: one line naming the file (hostile-input audit, item 9)."""
    path = tmp_path / "shard-0-of-2.json"
    path.write_text(text)
    for read in (lambda: read_manifest(path), lambda: complete_run(tmp_path)):
        with pytest.raises(ShardError) as info:
            read()
        assert str(path) in str(info.value) and message in str(info.value) and "\n" not in str(info.value)
    good = _manifest("A", "m1", [(0, "a")], True)
    write_manifest(tmp_path, Shard(0, 2), {**good, "n_items": "3"})
    with pytest.raises(ShardError, match="'n_items' is '3', expected int"):
        read_manifest(path)
    write_manifest(tmp_path, Shard(0, 2), {**good, "items": [[0, "a"]]})
    with pytest.raises(ShardError, match=r"an item is \[0, 'a'\], expected \[index, id, output, fields\]"):
        read_manifest(path)


def test_background_writer_keeps_order_bounds_memory_and_raises():
    done: list[int] = []
    peak = [0]
    lock = threading.Lock()
    in_queue = [0]

    def job(i):
        time.sleep(0.002)
        with lock:
            in_queue[0] -= 10
        done.append(i)

    with BackgroundWriter(max_pending_bytes=30) as writer:
        for i in range(20):
            with lock:
                in_queue[0] += 10
                peak[0] = max(peak[0], in_queue[0])
            writer.submit(job, i, size=10)
    assert done == list(range(20))
    assert peak[0] <= 40  # at most 3 queued (30 bytes) plus the one being submitted

    def fail(i):
        if i == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with BackgroundWriter() as writer:
            for i in range(50):
                writer.submit(fail, i)
                time.sleep(0.001)
    # a failing producer still gets every queued job written
    written = []
    with pytest.raises(KeyError):
        with BackgroundWriter() as writer:
            for i in range(5):
                writer.submit(written.append, i)
            raise KeyError("producer")
    assert written == [0, 1, 2, 3, 4]


def test_throughput_line():
    t = Throughput(sequences=10, tokens=5000, seconds=2.0)
    assert t.summary() == "10 sequences (5,000 tokens) in 2.0 s: 5.00 sequences/s, 2,500 tokens/s"


def test_fingerprint_follows_the_weights_not_the_name():
    a, b = random_dynamics_model(seed=1), random_dynamics_model(seed=1)
    assert module_fingerprint(a) == module_fingerprint(b)
    with torch.no_grad():
        b.res_pred_nn[0].weight[0, 0] += 1e-6
    assert module_fingerprint(b, refresh=True) != module_fingerprint(a)
    assert module_fingerprint(random_dynamics_model(seed=1, model_select="seqdance")) != module_fingerprint(a)
