"""What the web app (``seqdance serve``) adds to a prediction, how it behaves under a burst, and its memory.

    python benchmarks/bench_app.py            # 300 residues, 20 concurrent requests, 100 requests for memory
    python benchmarks/bench_app.py --quick    # fewer repeats, 30 requests for memory

Random ESM2-35M-shaped ESMDance weights (saved once with ``save_pretrained``), CPU, float32. Three parts:

1. **Overhead** (one process): the app runs in this process (uvicorn in a thread) around the same loaded model
   that ``seqdance.predict`` is timed with, calls alternating, each with a new random sequence (no cache hit).
   ``POST /api/predict`` is timed from sending the request to having read the whole JSON answer (all 23
   properties, 13 of them L×L maps); parsing that JSON (orjson) is reported beside it.
2. **Burst**: 20 requests at once on 127.0.0.1 (bounded: 20 requests, each with a timeout), queue of 8 places:
   every request must end with 200 or 503 "queue full", and the server must never have run two heavy jobs at once
   (its ``peak_running`` counter).
3. **Memory**: a fresh ``seqdance serve`` process with ``--cache-mb 64`` answers N distinct sequences one after
   the other; its resident memory after N must stay within the cache bound plus 1.2 × its memory after 10.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

AMINO = "ACDEFGHIKLMNPQRSTVWY"
REPO_SRC = Path(__file__).resolve().parents[1] / "src"


def sequence(length: int, seed: int) -> str:
    import numpy as np

    return "".join(np.random.default_rng(seed).choice(list(AMINO), length))


def make_model(folder: Path, seed: int = 0) -> Path:
    """Random ESM2-35M-shaped ESMDance weights (non-zero biases, like a trained model), saved as a model folder."""
    import torch

    from seqdance.model import DynamicsModel

    torch.manual_seed(seed)
    model = DynamicsModel("35M", "esmdance")
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.normal_(0.0, 0.1)
    model.save_pretrained(folder)
    return folder


def post(base: str, payload: dict, timeout: float = 600) -> tuple[int, bytes]:
    req = urllib.request.Request(base + "/api/predict", data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get(base: str, path: str) -> dict:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return json.loads(response.read())


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def in_process_server(model, name: str):
    import uvicorn

    from seqdance.app.server import create_app
    from seqdance.app.settings import AppSettings
    from seqdance.app.work import ModelService

    settings = AppSettings(max_residues=5000, queue_size=8)
    service = ModelService(model, name=name, device="cpu", settings=settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, settings), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.05)
    return base, server, thread


def overhead(model, name: str, length: int, repeats: int, base: str) -> dict:
    import orjson

    import seqdance

    seqdance.predict(model, [sequence(length, 999)])  # warm-up of both paths
    post(base, {"sequence": sequence(length, 998)})
    direct, api, parse, size = [], [], [], 0
    for r in range(repeats):
        start = time.perf_counter()
        seqdance.predict(model, [sequence(length, 2 * r)])
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        status, body = post(base, {"sequence": sequence(length, 2 * r + 1)})
        api.append(time.perf_counter() - start)
        assert status == 200, body[:300]
        start = time.perf_counter()
        orjson.loads(body)
        parse.append(time.perf_counter() - start)
        size = len(body)
    return {"direct": direct, "api": api, "parse": parse, "bytes": size}


def burst(base: str, length: int, n: int) -> dict:
    def one(k: int) -> int:
        return post(base, {"sequence": sequence(length, 10_000 + k)}, timeout=600)[0]

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        codes = list(pool.map(one, range(n)))
    wall = time.perf_counter() - start
    health = get(base, "/api/health")
    return {"codes": codes, "wall": wall, "peak_running": health["queue"]["peak_running"],
            "refused": health["queue"]["refused"]}


def memory(model_dir: Path, length: int, n: int, cache_mb: int) -> dict:
    import psutil

    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "seqdance.cli.main", "serve", "--model", str(model_dir),
                             "--port", str(port), "--cache-mb", str(cache_mb), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                get(base, "/api/health")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        rss = psutil.Process(proc.pid)
        after: dict[int, float] = {0: rss.memory_info().rss}
        for k in range(n):
            status, body = post(base, {"sequence": sequence(length, 50_000 + k)})
            assert status == 200, body[:300]
            if k + 1 in (10, n):
                after[k + 1] = rss.memory_info().rss
        health = get(base, "/api/health")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"rss": after, "cache": health["cache"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--length", type=int, default=300, help="residues per sequence (default 300)")
    parser.add_argument("--repeats", type=int, default=8, help="timed calls of each path (default 8)")
    parser.add_argument("--concurrent", type=int, default=20, help="requests of the burst (default 20)")
    parser.add_argument("--memory-requests", type=int, default=100, help="requests of the memory part (default 100)")
    parser.add_argument("--cache-mb", type=int, default=64, help="cache bound of the memory part's server (default 64)")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 30 requests for memory")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.memory_requests = 3, 30
    import torch

    import seqdance

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; {args.length} residues; "
          f"random ESM2-35M-shaped ESMDance weights", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_model(Path(tmp) / "esmdance-35M-random")
        model = seqdance.load_model(str(model_dir))
        base, server, thread = in_process_server(model, str(model_dir))
        found = overhead(model, str(model_dir), args.length, args.repeats, base)
        med_direct, med_api = statistics.median(found["direct"]), statistics.median(found["api"])
        print("\n1. overhead (same process, same model, alternating calls, new sequence each call)")
        print("| path | best (s) | median (s) |\n|---|---|---|")
        print(f"| seqdance.predict | {min(found['direct']):.3f} | {med_direct:.3f} |")
        print(f"| POST /api/predict (answer read, {found['bytes'] / 1e6:.1f} MB JSON) | {min(found['api']):.3f} | "
              f"{med_api:.3f} |")
        print(f"| + parsing the answer (orjson) | {min(found['parse']):.3f} | "
              f"{statistics.median(found['parse']):.3f} |")
        ratio = med_api / med_direct
        print(f"ratio of medians: {ratio:.2f} (goal <= 1.2): {'ok' if ratio <= 1.2 else 'OVER'}")

        result = burst(base, args.length, args.concurrent)
        ok, full = result["codes"].count(200), result["codes"].count(503)
        other = len(result["codes"]) - ok - full
        print(f"\n2. burst of {args.concurrent} concurrent requests (queue of 8): {ok} answered, {full} 'queue full', "
              f"{other} other; {result['wall']:.1f} s; peak heavy jobs at once: {result['peak_running']} "
              f"({'ok' if other == 0 and result['peak_running'] == 1 else 'FAILED'})")
        server.should_exit = True
        thread.join(30)

        mem = memory(model_dir, args.length, args.memory_requests, args.cache_mb)
        rss = mem["rss"]
        bound = args.cache_mb * 2**20 + 1.2 * rss[10]
        last = rss[args.memory_requests]
        print(f"\n3. memory of a fresh server (--cache-mb {args.cache_mb}): RSS at start {rss[0] / 2**20:.0f} MiB, "
              f"after 10 requests {rss[10] / 2**20:.0f} MiB, after {args.memory_requests} {last / 2**20:.0f} MiB; "
              f"bound (cache + 1.2 x after 10) {bound / 2**20:.0f} MiB: {'ok' if last <= bound else 'OVER'}; "
              f"cache {mem['cache']['entries']} entries, {mem['cache']['bytes'] / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
