"""docs/walkthrough.md, executed: every ``bash`` block of the page runs in a clean folder, in order, and every
output block the page prints after a command block must appear in what those commands printed, number for number.

A change that moves a number of the walkthrough (the split, the trained model's losses, a warning's figures)
fails here until the page is rerun and updated. Rules:

* the installation lines (``python3 -m venv ...``, ``pip install ...``) are not run: the test's
  own environment is the installation (they must still be on the page);
* the step that needs the Hugging Face hub (``seqdance predict ntl9.fasta -o released/``) runs against a closed
  loopback port with an empty cache and must fail at once with the one line the page shows, leaving no folder;
* the other commands must exit 0; each runs in its own ``bash -euo pipefail`` with the working folder and the
  variables of the previous ones;
* an output block (a fence without a language) belongs to the command block before it; its lines must appear in
  that order in what the block's commands printed (stdout, then stderr, of each command); ``…`` stands for any
  text; whitespace runs are equal; integers must be equal, and a decimal number must equal the page's digits
  to one unit of its last digit (float32 arithmetic of another CPU may round the last digit the other way);
* every path of the page's closing table exists afterwards.

The clean folder is laid out like a checkout: ``repo/`` (its ``configs`` linked) beside ``shared/data``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGE = REPO_ROOT / "docs" / "walkthrough.md"
#: Lines of the page that install seqdance: the test environment already is that installation.
INSTALL_PREFIXES = ("python3 -m venv", "pip install")
#: The one command that needs the Hugging Face hub.
HUB_COMMAND = "seqdance predict ntl9.fasta -o released/"
CLOSED_ENDPOINT = "http://127.0.0.1:9"
NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?"


@dataclass
class Step:
    """One ``bash`` block of the page and the output blocks that follow it."""

    commands: list[str]
    expected: list[str] = field(default_factory=list)


def page_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    for lang, body in re.findall(r"^```([\w-]*)\n(.*?)^```", text, flags=re.M | re.S):
        if lang == "bash":
            steps.append(Step(logical_lines(body)))
        elif lang in ("", "text") and steps:
            steps[-1].expected.append(body)
    return steps


def logical_lines(body: str) -> list[str]:
    """Command lines of a block: backslash continuations joined, blank lines and comments dropped."""
    lines, pending = [], ""
    for raw in body.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def expected_pattern(block: str) -> tuple[re.Pattern[str], list[str]]:
    """A regex for an output block (numbers captured, ``…`` any text, whitespace runs free) and its numbers."""
    parts, numbers = [], []
    for k, piece in enumerate(block.split("…")):
        if k:
            parts.append(r".*?")
        for token in re.split(rf"(\s+|{NUMBER})", piece):
            if not token:
                continue
            if "\n" in token:  # the page's lines in order; other output (progress, other streams) may lie between
                parts.append(r"\s.*?")
            elif token.isspace():
                parts.append(r"\s+")
            elif re.fullmatch(NUMBER, token):
                parts.append(f"({NUMBER})")
                numbers.append(token)
            else:
                parts.append(re.escape(token))
    return re.compile("".join(parts).strip(), flags=re.S), numbers


def numbers_agree(page: str, printed: str) -> bool:
    a, b = float(page.replace(",", "")), float(printed.replace(",", ""))
    mantissa = page.split("e")[0].split("E")[0]
    if "." not in mantissa:
        return page.replace(",", "") == printed.replace(",", "")
    digits = len(mantissa.split(".")[1])
    exponent = int(page.lower().split("e")[1]) if "e" in page.lower() else 0
    return abs(a - b) <= 10.0 ** (exponent - digits) * (1 + 1e-9)


def check_block(block: str, output: str, where: str) -> None:
    pattern, page_numbers = expected_pattern(block.strip())
    squeezed = re.sub(r"[ \t]+", " ", output)
    match = pattern.search(squeezed)
    assert match is not None, f"{where}: the page shows\n{block}\nbut the commands printed\n{output[-6000:]}"
    wrong = [(p, q) for p, q in zip(page_numbers, match.groups()) if not numbers_agree(p, q)]
    assert not wrong, f"{where}: numbers differ (page, printed): {wrong}\npage:\n{block}\nprinted:\n{match.group(0)}"


def run_line(line: str, state: Path, env: dict[str, str], *, keep_state: bool = True) -> subprocess.CompletedProcess:
    """Run one command line in bash with the folder and variables left by the previous ones."""
    script = (f"set -euo pipefail; set -a; . {shlex.quote(str(state / 'env'))}; "
              f"cd \"$(cat {shlex.quote(str(state / 'cwd'))})\"\n{line}\n")
    if keep_state:
        script += (f"pwd > {shlex.quote(str(state / 'cwd'))}; "
                   f"export -p | grep -v -e '^declare -x PWD=' -e '^declare -x OLDPWD=' "
                   f"> {shlex.quote(str(state / 'env.new'))}; mv {shlex.quote(str(state / 'env.new'))} "
                   f"{shlex.quote(str(state / 'env'))}\n")
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600)


def test_page_structure_is_what_the_test_expects() -> None:
    """Cheap checks of the page itself, so that a reworded page fails with a clear message."""
    text = PAGE.read_text()
    steps = page_steps(text)
    lines = [line for step in steps for line in step.commands]
    for prefix in INSTALL_PREFIXES:
        assert any(line.startswith(prefix) for line in lines), f"no '{prefix}' line on the page"
    assert HUB_COMMAND in lines
    assert sum(len(step.expected) for step in steps) >= 6
    # the page's claim that the model beats the mean baseline on both groups, in its own numbers
    row = r"^\| (\w+) \| \(weighted total\) \| \d+ \| ([\d.]+) \| – \| [\d.]+ \| ([\d.]+) \|$"
    totals = re.findall(row, text, re.M)
    assert len(totals) == 2 and all(float(model) < float(base) for _, model, base in totals), totals


def test_expected_blocks_match_numbers_to_the_printed_digits() -> None:
    check_block("loss 1.2524 of 32 (… s)", "loss 1.2525 of 32 (9.1 s)", "self-test")
    for wrong in ("loss 1.2527 of 32 (9 s)", "loss 1.2524 of 31 (9 s)", "loss 1.2524 of 32 [9 s]"):
        with pytest.raises(AssertionError):
            check_block("loss 1.2524 of 32 (… s)", wrong, "self-test")
    check_block("md  2   2\nall 32", "md 2 2\nall  32\n", "self-test")


@pytest.mark.slow
def test_walkthrough_runs_and_prints_the_page_numbers(shared_data, tmp_path) -> None:
    pytest.importorskip("MDAnalysisTests", reason="the walkthrough's adenylate kinase comes from MDAnalysisTests")
    pytest.importorskip("mdtraj", reason="the walkthrough's features need the md extra")
    pytest.importorskip("matplotlib", reason="the walkthrough's pictures need the plots extra")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "configs").symlink_to(REPO_ROOT / "configs", target_is_directory=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(shared_data, target_is_directory=True)
    state = tmp_path / "state"
    state.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "SEQDANCE_", "OMP_"))}
    env.update(PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")]),
               HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=CLOSED_ENDPOINT, SEQDANCE_CACHE=str(tmp_path / "cache"))
    (state / "env").write_text("")
    (state / "cwd").write_text(str(repo))

    timings = []
    for number, step in enumerate(page_steps(PAGE.read_text())):
        output = ""
        for line in step.commands:
            if line.startswith(INSTALL_PREFIXES):
                continue
            began = time.perf_counter()
            if line == HUB_COMMAND:
                done = run_line(line, state, env, keep_state=False)
                assert done.returncode == 1, done.stdout + done.stderr
                assert len(done.stderr.strip().splitlines()) == 1, done.stderr
                assert not (Path((state / "cwd").read_text().strip()) / "released").exists()
                out = done.stderr.replace(CLOSED_ENDPOINT.split("//")[1], "huggingface.co")
            else:
                done = run_line(line, state, env)
                assert done.returncode == 0, f"block {number}: {line}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
                out = done.stdout + done.stderr
            timings.append((time.perf_counter() - began, line[:70]))
            output += out
        for block in step.expected:
            check_block(block, output, f"block {number} ({step.commands[0][:60]})")

    tour = Path((state / "cwd").read_text().strip())
    table = PAGE.read_text().split("## Where the outputs are", 1)[1]
    for cell in re.findall(r"^\| (.+?) \|", table, flags=re.M):
        for path in re.findall(r"`([^`]+)`", cell):
            assert list(tour.glob(path.rstrip("/"))), f"the page's table names {path}, which the walk did not write"
    print("\n".join(f"{seconds:6.1f} s  {line}" for seconds, line in timings))
