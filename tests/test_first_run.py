"""A new user's first commands: help without heavy imports, the offline / unreachable-hub paths, device choice.

The hub tests run the command line in a subprocess with an empty Hugging Face cache (``HF_HOME``); the
"unreachable" hub is a closed port on the loopback interface (``HF_ENDPOINT``), so nothing leaves the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _checkpoints import write_released_checkpoint

REPO_SRC = Path(__file__).resolve().parents[1] / "src"
#: A loopback port nothing listens on: connections are refused at once.
CLOSED_ENDPOINT = "http://127.0.0.1:9"
HEAVY_MODULES = ("torch", "numpy", "pandas", "scipy", "h5py", "mdtraj", "matplotlib", "huggingface_hub")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_SRC), env.get("PYTHONPATH", "")])
    env["HF_HOME"] = str(tmp_path / "hf-home")
    env.update(extra)
    return env


def _seqdance(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seqdance.cli.main", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_help_loads_no_numeric_library(tmp_path) -> None:
    code = (
        "import sys\n"
        "from seqdance.cli.main import build_parser\n"
        "parser = build_parser()\n"
        "parser.format_help()\n"
        "for action in parser._subparsers._group_actions:\n"
        "    for sub in action.choices.values():\n"
        "        sub.format_help()\n"
        f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""  # none of them imported to build every command's help


def _fasta(tmp_path: Path) -> Path:
    fasta = tmp_path / "x.fa"
    fasta.write_text(">p1\nMKTAYIAKQRQISFVK\n")
    return fasta


def test_offline_without_cache_fails_at_once_and_leaves_nothing(tmp_path) -> None:
    _fasta(tmp_path)
    done = _seqdance(["predict", "x.fa", "-o", "out/"], _env(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one message, no warnings or retries before it
    message = lines[0]
    assert message.startswith("seqdance predict: error:") and "ChaoHou/ESMDance" in message
    assert "HF_HUB_OFFLINE is set" in message and "HF_HUB_OFFLINE=1" not in message
    assert "--model LOCAL_DIR" in message and "update_N.pt" in message and "Zenodo" in message
    assert not (tmp_path / "out").exists()


def test_unreachable_hub_fails_without_retries(tmp_path) -> None:
    _fasta(tmp_path)
    done = _seqdance(["predict", "x.fa", "-o", "out/"], _env(tmp_path, HF_ENDPOINT=CLOSED_ENDPOINT), tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "127.0.0.1:9 could not be reached" in lines[0] and "Retrying" not in done.stderr
    assert "--model LOCAL_DIR" in lines[0] and "HF_HUB_OFFLINE=1 runs from the cache" in lines[0]
    assert not (tmp_path / "out").exists()


def _fake_cached_repo(hf_home: Path, repo_id: str, source: Path) -> None:
    """Put a local checkpoint into the Hugging Face cache layout as a download of ``repo_id`` would."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_cached_model_runs_when_the_hub_is_unreachable(tmp_path) -> None:
    checkpoint = write_released_checkpoint(tmp_path / "ckpt", "tiny", "esmdance", seed=1)
    env = _env(tmp_path, HF_ENDPOINT=CLOSED_ENDPOINT)
    _fake_cached_repo(Path(env["HF_HOME"]), "ChaoHou/ESMDance", checkpoint)
    _fasta(tmp_path)
    done = _seqdance(["predict", "x.fa", "-o", "out/", "-q", "--device", "cpu"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr and "WARNING" not in done.stderr
    assert (tmp_path / "out" / "p1.npz").is_file()


def test_auto_device_order(monkeypatch) -> None:
    import torch

    from seqdance.devices import auto_device_name, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert auto_device_name() == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert auto_device_name() == "cpu" and resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_device_name() == "cuda"
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu0")
