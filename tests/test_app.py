"""``seqdance serve``: the job queue, the cache and the safety rules in process; then a real server of a tiny local
model on a free port of 127.0.0.1 (its JSON API against ``seqdance predict``, one-line errors, a bounded burst of
requests), the page in Debian's chromium (a prediction, its NPZ download, a B-factor structure, the errors), and a
clean stop on SIGTERM (the last test: it stops the module's server)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from _browser import free_port, hover_point, screenshot, wait_for
from _checkpoints import write_released_checkpoint

from seqdance.cli.main import main
from seqdance.schema import PROPERTY_NAMES

fastapi = pytest.importorskip("fastapi", reason="the app extra (fastapi) is not installed")

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
RECORDS = {"alpha": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "pair": "MKVLAGGSWH:GGSWHMKV"}
MAX_UPLOAD = 50_000


# --- in process: queue, cache, guards --------------------------------------------------------------------------

def test_job_queue_runs_one_job_at_a_time_and_answers_queue_full() -> None:
    from seqdance.app.jobs import Job, JobQueue, QueueFull

    gate = threading.Event()
    active, peak = [0], [0]
    lock = threading.Lock()

    def work(job):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        gate.wait(10)
        job.report(0.5, "half")
        with lock:
            active[0] -= 1
        return job.kind

    queue = JobQueue(2, kept=10)
    first = queue.submit(Job("a", work))
    wait = time.monotonic()
    while first.state != "running" and time.monotonic() - wait < 5:
        time.sleep(0.01)
    second, third = queue.submit(Job("b", work)), queue.submit(Job("c", work))
    assert (queue.position(first), queue.position(second), queue.position(third)) == (0, 1, 2)
    start = time.monotonic()
    with pytest.raises(QueueFull, match="queue full"):
        queue.submit(Job("d", work))
    assert time.monotonic() - start < 0.5  # an answer, not a hang
    gate.set()
    assert [j.future.result(10) for j in (first, second, third)] == ["a", "b", "c"]
    assert peak[0] == 1 and queue.stats()["peak_running"] == 1 and queue.stats()["refused"] == 1
    assert third.progress == 1.0 and queue.get(third.id) is third
    queue.stop()


def test_result_cache_keeps_within_its_bound() -> None:
    from seqdance.app.cache import ResultCache, content_key

    cache = ResultCache(1000)
    for k in range(5):
        cache.put(content_key(k=k), k, 300)
    assert cache.bytes <= 1000 and cache.stats()["entries"] == 3
    assert cache.get(content_key(k=0)) is None and cache.get(content_key(k=4)) == 4
    cache.put("big", "x", 2000)  # larger than the whole bound: not kept, nothing evicted
    assert cache.get("big") is None and cache.stats()["entries"] == 3


def _call(app, path: str = "/", headers: dict | None = None, body: bytes = b"", chunked: bool = False):
    """Status of one request to an ASGI app, called directly."""
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if not chunked:
        raw.append((b"content-length", str(len(body)).encode()))
    path, _, query = path.partition("?")
    scope = {"type": "http", "method": "POST", "path": path, "query_string": query.encode(), "headers": raw}
    events = [{"type": "http.request", "body": body[i:i + 1000], "more_body": i + 1000 < len(body)}
              for i in range(0, max(len(body), 1), 1000)]
    sent = []

    async def receive():
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


async def _reads_all(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_token_guard_and_upload_limit() -> None:
    from seqdance.app.server import BodyLimit, TokenGuard

    guarded = TokenGuard(_reads_all, "s3cret-token")
    assert _call(guarded) == 401
    assert _call(guarded, headers={"Authorization": "Bearer wrong-token"}) == 401
    assert _call(guarded, headers={"Authorization": "Bearer s3cret-token"}) == 200
    assert _call(guarded, headers={"X-Seqdance-Token": "s3cret-token"}) == 200
    assert _call(guarded, "/?token=s3cret-token") == 200
    assert _call(guarded, headers={"Cookie": "seqdance_token=s3cret-token"}) == 200
    assert _call(guarded, headers={"Cookie": 'seqdance_token="s3cret-token; \x00=1'}) == 401  # malformed: no token
    limited = BodyLimit(_reads_all, 5000)
    assert _call(limited, body=b"x" * 4000) == 200
    assert _call(limited, body=b"x" * 6000) == 413  # declared length
    assert _call(limited, body=b"x" * 6000, chunked=True) == 413  # counted as it arrives


def test_serve_refuses_a_reachable_host_without_token(capsys) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--model", "no/such-model"]) == 1
    err = capsys.readouterr().err
    assert "--token" in err and len(err.strip().splitlines()) == 1
    assert main(["serve", "--host", "127.0.0.1", "--token", "short", "--model", "no/such-model"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err


def test_json_of_arrays_writes_nan_as_null() -> None:
    from seqdance.app.server import _json_response

    response = _json_response({"v": np.array([np.nan, 0.5, np.inf], dtype=np.float32)})
    assert json.loads(response.body) == {"v": [None, 0.5, None]}


# --- a real server --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny model, the command line's predictions of RECORDS, and a server of the model on a free port."""
    folder = tmp_path_factory.mktemp("serve")
    model = write_released_checkpoint(folder / "tiny", "tiny", "esmdance", seed=7)
    fasta = folder / "in.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in RECORDS.items()))
    assert main(["predict", str(fasta), "-o", str(folder / "cli"), "--model", str(model), "-q"]) == 0
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")]))
    log = open(folder / "server.log", "w")  # closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqdance.cli.main", "serve", "--model", str(model), "--port", str(port),
         "--max-upload-mb", str(MAX_UPLOAD / 1e6), "--max-residues", "400", "--queue-size", "2",
         "--cache-mb", "64", "--max-scan-residues", "30", "-q"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(base + "/api/health", timeout=2).read()
            break
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail(f"the server did not start:\n{(folder / 'server.log').read_text()}")
            time.sleep(0.2)
    yield {"base": base, "proc": proc, "folder": folder, "model": model, "log": folder / "server.log"}
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def request(base: str, path: str, payload: object | None = None, *, data: bytes | None = None,
            headers: dict | None = None) -> tuple[int, object]:
    body = data if data is not None else (None if payload is None else json.dumps(payload).encode())
    req = urllib.request.Request(base + path, data=body, headers=headers or {},
                                 method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def cli_prediction(served, seq_id: str):
    return np.load(served["folder"] / "cli" / f"{seq_id}.npz")


def test_health(served) -> None:
    from seqdance.inference.fingerprint import module_fingerprint
    from seqdance.model import load_model

    status, health = request(served["base"], "/api/health")
    assert status == 200
    assert health["model"] == str(served["model"]) and health["device"] == "cpu"
    assert health["model_fingerprint"] == module_fingerprint(load_model(str(served["model"])))
    assert health["queue_length"] == 0 and health["limits"]["max_upload_bytes"] == MAX_UPLOAD


def test_api_predict_equals_seqdance_predict(served) -> None:
    sequences = [{"id": k, "sequence": v} for k, v in RECORDS.items()]
    status, answer = request(served["base"], "/api/predict", {"sequences": sequences})
    assert status == 200, answer
    assert answer["model"] == str(served["model"])
    for result in answer["results"]:
        written = cli_prediction(served, result["id"])
        assert result["sequence"] == str(written["sequence"])
        assert result["chain_lengths"] == written["chain_lengths"].tolist()
        assert set(result["values"]) == set(PROPERTY_NAMES)
        for name in PROPERTY_NAMES:
            got = np.asarray(result["values"][name], dtype=np.float64)
            np.testing.assert_allclose(got, written[name], rtol=0, atol=1e-6, err_msg=name)
    status, answer = request(served["base"], "/api/predict", {"sequence": RECORDS["alpha"],
                                                              "properties": ["rmsf_nor", "corr"]})
    assert status == 200 and set(answer["results"][0]["values"]) == {"rmsf_nor", "corr"}


def test_repeated_sequences_come_from_the_cache(served) -> None:
    _, before = request(served["base"], "/api/health")
    status, _ = request(served["base"], "/api/predict", {"sequence": RECORDS["alpha"], "pairs": False})
    _, after = request(served["base"], "/api/health")
    assert status == 200
    assert after["cache"]["hits"] > before["cache"]["hits"]
    assert after["queue"]["done"] == before["queue"]["done"]  # no job ran for it
    assert after["cache"]["bytes"] <= after["cache"]["limit_bytes"]


def test_api_errors_are_one_line(served) -> None:
    base = served["base"]
    cases = [
        ({"sequence": "MKT1AY"}, 400, "character '1' at residue 4"),
        ({"sequence": "M" * 401}, 400, "at most 400 residues"),
        ({"sequence": "MKTAY", "properties": ["rmsf_nr"]}, 400, "unknown property name(s) ['rmsf_nr']"),
        ({"sequences": "MKTAY"}, 400, '"sequences" must be a list'),
    ]
    for payload, code, text in cases:
        status, answer = request(base, "/api/predict", payload)
        assert status == code and text in answer["error"] and "\n" not in answer["error"], (payload, answer)
    status, answer = request(base, "/api/predict", data=b"not json")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = request(base, "/api/predict", data=b"{" + b" " * MAX_UPLOAD + b"}")
    assert status == 413 and "upload limit" in answer["error"]
    boundary = "XyZ"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"fasta\"\r\n\r\nhello world\r\n"
            f"--{boundary}--\r\n").encode()
    status, answer = request(base, "/api/jobs", data=form,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and "before the first '>' header" in answer["error"]
    status, answer = request(base, "/api/jobs/nope")
    assert status == 404


def test_a_burst_of_requests_runs_one_job_at_a_time(served) -> None:
    base = served["base"]

    def one(k: int) -> int:
        return request(base, "/api/predict", {"sequence": RECORDS["alpha"][: 10 + k]})[0]

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(8)))
    assert set(codes) <= {200, 503} and 200 in codes
    _, health = request(base, "/api/health")
    assert health["queue"]["peak_running"] == 1
    assert health["queue"]["refused"] == codes.count(503)


# --- the page in a browser -------------------------------------------------------------------------------------

THREE = {"A": "ALA", "C": "CYS", "D": "ASP", "E": "GLU", "F": "PHE", "G": "GLY", "H": "HIS", "I": "ILE", "K": "LYS",
         "L": "LEU", "M": "MET", "N": "ASN", "P": "PRO", "Q": "GLN", "R": "ARG", "S": "SER", "T": "THR", "V": "VAL",
         "W": "TRP", "Y": "TYR"}


def ca_pdb(path: Path, sequence: str) -> Path:
    """A Cα-only PDB file of ``sequence`` (a straight chain, 3.8 Å apart)."""
    lines = [f"ATOM  {k + 1:5d}  CA  {THREE[aa]} A{k + 1:4d}    {3.8 * k:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00"
             "           C" for k, aa in enumerate(sequence)]
    path.write_text("\n".join([*lines, "TER", "END"]) + "\n")
    return path


def submit(browser, fasta: str = "", *, upload: Path | None = None, properties: str = "") -> None:
    from selenium.webdriver.common.by import By

    browser.execute_script("document.body.dataset.state = ''; document.getElementById('error').hidden = true;")
    box = browser.find_element(By.ID, "fasta")
    box.clear()
    if fasta:
        browser.execute_script("arguments[0].value = arguments[1]", box, fasta)
    field = browser.find_element(By.ID, "fasta-file")
    browser.execute_script("arguments[0].value = ''", field)
    if upload is not None:
        field.send_keys(str(upload))
    props = browser.find_element(By.ID, "properties")
    props.clear()
    props.send_keys(properties)
    browser.find_element(By.ID, "run").click()


def page_error(browser) -> str:
    wait_for(browser, "return !document.getElementById('error').hidden", 30)
    return browser.execute_script("return document.getElementById('error').textContent")


@pytest.mark.browser
def test_the_page_predicts_downloads_and_maps_like_the_command_line(served, browser, browser_downloads,
                                                                     tmp_path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(served["base"] + "/")
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    submit(browser, f">alpha\n{RECORDS['alpha']}\n")
    wait_for(browser, "return document.body.dataset.state === 'shown'")
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None
    written = cli_prediction(served, "alpha")
    k = 11
    text = hover_point(browser, browser.find_element(By.CSS_SELECTOR, ".profiles-plot"), 0, k)
    assert f"{RECORDS['alpha'][k]}{k + 1}" in text
    shown = float(text.split("rmsf_nor = ")[1].split()[0])
    assert shown == float(f"{written['rmsf_nor'][k]:.4g}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#protein .js-plotly-plot")) == 4  # profiles + 3 maps

    # the NPZ downloaded through the page is the command line's
    browser.find_element(By.CSS_SELECTOR, "a[data-file='alpha.npz']").click()
    target = browser_downloads / "alpha.npz"
    deadline = time.monotonic() + 20
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    with np.load(target) as got:
        assert set(got.files) == set(written.files)
        for key in written.files:
            if written[key].dtype.kind == "f":
                np.testing.assert_allclose(got[key], written[key], rtol=0, atol=1e-6, err_msg=key)
            else:
                assert got[key].tolist() == written[key].tolist(), key

    # a structure coloured by rmsf_nor; then one that does not match
    pdb = ca_pdb(tmp_path / "alpha.pdb", RECORDS["alpha"])
    browser.find_element(By.ID, "structure-file").send_keys(str(pdb))
    browser.find_element(By.ID, "structure-run").click()
    wait_for(browser, "return !!document.querySelector(\"a[data-file='alpha.rmsf_nor.pdb']\")", 20)
    href = browser.find_element(By.CSS_SELECTOR, "a[data-file='alpha.rmsf_nor.pdb']").get_attribute("href")
    atoms = [line for line in urllib.request.urlopen(href).read().decode().splitlines() if line.startswith("ATOM")]
    assert float(atoms[k][60:66]) == pytest.approx(written["rmsf_nor"][k], abs=0.006)
    screenshot(browser, tmp_path / "app.png", "app.png")
    other = ca_pdb(tmp_path / "other.pdb", "WWWWWWWWWWPPPPPPPPPPWWWWWWWWWW")
    field = browser.find_element(By.ID, "structure-file")
    browser.execute_script("arguments[0].value = ''", field)
    field.send_keys(str(other))
    browser.find_element(By.ID, "structure-run").click()
    error = page_error(browser)
    assert "other.pdb" in error and "matches" in error and "\n" not in error and "/tmp" not in error


@pytest.mark.browser
def test_the_page_shows_one_line_errors(served, browser, tmp_path) -> None:
    browser.get(served["base"] + "/")
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    submit(browser, ">bad\nMKTAY1AKQ\n")
    assert page_error(browser) == ("sequence 'bad': character '1' at residue 6 is not an amino-acid code of the "
                                   "ESM2 vocabulary (ABCDEFGHIKLMNOPQRSTUVWXYZ)")
    big = tmp_path / "big.fasta"
    big.write_text(">big\n" + "MKTAYIAKQR" * (MAX_UPLOAD // 10 + 100) + "\n")
    submit(browser, upload=big)
    error = page_error(browser)
    assert "larger than this server's upload limit" in error and "\n" not in error
    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not sequences\n")
    submit(browser, upload=text)
    assert page_error(browser) == "notes.txt: line 1: sequence text before the first '>' header"
    submit(browser, ">a\nMKTAYIAKQR\n", properties="rmsf_nr")
    assert page_error(browser).startswith("unknown property name(s) ['rmsf_nr']")
    submit(browser, ">long\n" + "A" * 401 + "\n")
    assert "at most 400 residues per request" in page_error(browser)


def test_sigterm_stops_the_server_cleanly(served) -> None:
    proc = served["proc"]
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in served["log"].read_text()
