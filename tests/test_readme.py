"""The README says what the command line does (issue 21): its first command names a file the repository ships
and runs as written (failing, without network and cache, only with the one-line message), and its exit-status
paragraph gives the codes the CLI returns for a user error, a usage error and a bug."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seqdance.cli import main as cli_main
from seqdance.cli.main import build_parser, main
from seqdance.io_utils import read_fasta

REPO_ROOT = Path(__file__).resolve().parents[1]
README = (REPO_ROOT / "README.md").read_text()


def first_command() -> list[str]:
    """The ``seqdance ...`` part of the README's first bash block, as a shell would split it."""
    block = re.search(r"```bash\n(.*?)```", README, re.S)
    assert block is not None
    line = block.group(1).strip().splitlines()[0]
    commands = [shlex.split(part) for part in line.split("&&")]
    found = [c for c in commands if c and c[0] == "seqdance"]
    assert found, line
    return found[0]


def test_the_first_command_parses_and_names_a_shipped_fasta() -> None:
    argv = first_command()
    args = build_parser().parse_args(argv[1:])
    assert args.command == "predict"
    fasta = REPO_ROOT / args.input
    assert fasta.is_file(), f"the README's first command names {args.input}, which the repository does not ship"
    records = read_fasta(fasta)
    assert 3 <= len(records) <= 10 and all(40 <= len(r.sequence) <= 400 for r in records)


def test_the_example_sequences_are_their_noted_source(shared_data) -> None:
    """examples/README.md names each record's ProteinGym assay; the sequence is that assay's wild type."""
    notes = (REPO_ROOT / "examples" / "README.md").read_text()
    for record in read_fasta(REPO_ROOT / "examples" / "proteins.fasta"):
        assay = re.search(rf"`{record.id}` \|[^\n]*assay `([^`]+)`", notes)
        assert assay is not None, f"examples/README.md does not name the source of {record.id}"
        source = shared_data / "proteingym_single_dev" / "fasta" / f"{assay.group(1)}.fasta"
        if not source.is_file():
            pytest.skip(f"test data file absent: {source}")
        assert read_fasta(source)[0].sequence == record.sequence, record.id


def _clean_copy(tmp_path: Path) -> Path:
    """A folder holding what the first command reads from the repository (the examples), nothing else."""
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_the_first_command_as_written_fails_offline_with_one_line(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")]))
    folder = _clean_copy(tmp_path / "clone")
    argv = first_command()
    done = subprocess.run([sys.executable, "-m", "seqdance.cli.main", *argv[1:]], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("seqdance predict: error:") and "ChaoHou/ESMDance" in lines[0]
    assert "--model LOCAL_DIR" in lines[0]
    assert not (folder / "predictions").exists()


def test_the_first_command_runs_with_a_local_model(tmp_path, monkeypatch, one_torch_thread) -> None:
    from _checkpoints import write_released_checkpoint

    model = write_released_checkpoint(tmp_path / "model", "tiny", "esmdance", seed=4)
    folder = _clean_copy(tmp_path / "clone")
    monkeypatch.chdir(folder)
    assert main([*first_command()[1:], "--model", str(model), "-q"]) == 0
    written = sorted(p.stem for p in (folder / "predictions").glob("*.npz"))
    assert written == sorted(r.id for r in read_fasta(folder / "examples" / "proteins.fasta"))


# --- exit statuses ----------------------------------------------------------------------------------------------

def _readme_statuses() -> dict[str, int]:
    """The codes the README's exit-status paragraph states, by kind."""
    paragraph = README.split("**Errors and exit codes.**", 1)[1].split("\n\n", 1)[0]
    sentences = re.split(r"(?<=\.) (?=[A-Z])", " ".join(paragraph.split()))
    found = {}
    for kind, word in (("user", "problem with your input"), ("usage", "usage error"), ("bug", "is a bug"),
                       ("interrupted", "Ctrl-C")):
        sentence = next(s for s in sentences if word in s)
        found[kind] = int(re.findall(r"exit status (\d+)", sentence)[-1])
    return found


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def test_the_exit_status_paragraph_is_what_the_cli_does(tmp_path, monkeypatch, capsys) -> None:
    stated = _readme_statuses()
    assert stated == {"user": cli_main.USER_ERROR_EXIT_CODE, "usage": cli_main.USAGE_EXIT_CODE,
                      "bug": cli_main.BUG_EXIT_CODE, "interrupted": cli_main.INTERRUPTED_EXIT_CODE}
    # a user error: one line
    assert _status(["predict", str(tmp_path / "absent.fasta"), "-o", str(tmp_path / "o")]) == stated["user"]
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "absent.fasta" in err
    # usage errors: a number out of range, an unknown option, an output extension that does not match
    assert _status(["predict", "x.fasta", "-o", "o", "--batch-tokens", "0"]) == stated["usage"]
    assert _status(["predict", "x.fasta", "-o", "o", "--no-such-option"]) == stated["usage"]
    assert _status(["score", "--model", "m", "--sequence", "MKT", "--saturation", "-o", "scan.png"]) == stated["usage"]
    capsys.readouterr()

    # a bug: a traceback and the request to report it
    def broken(args):
        raise RuntimeError("an unexpected failure")

    parser = build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    predict = parser._subparsers._group_actions[0].choices["predict"]
    predict.set_defaults(func=broken)
    assert _status(["predict", "x.fasta", "-o", str(tmp_path / "o")]) == stated["bug"]
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: an unexpected failure" in err and cli_main.BUG_NOTE in err

    def interrupted(args):
        raise KeyboardInterrupt

    predict.set_defaults(func=interrupted)
    assert _status(["predict", "x.fasta", "-o", str(tmp_path / "o")]) == stated["interrupted"]
