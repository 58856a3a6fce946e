"""One vocabulary across every parser (issue 21, findings 13-15): the same option spelled the same way with the same
metavar and help, ``-q/--quiet`` everywhere, ``-o/--output`` for outputs with names checked against what is written,
``--device``/``--dtype`` wherever a model runs, deprecated names that warn and are in the CHANGELOG, and every hint
the code gives names an option the command has."""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from seqdance.cli.main import build_parser, main
from seqdance.cli.options import OUTPUT_SUFFIXES, DeprecatedAlias
from seqdance.devices import DEVICE_HELP, DTYPES

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src" / "seqdance"


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield " ".join(prefix), parser
        return
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*prefix, name))


COMMANDS: dict[str, argparse.ArgumentParser] = dict(_leaves(build_parser()))


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Visible option string -> action (deprecated aliases left out)."""
    return {flag: a for a in parser._actions if not isinstance(a, DeprecatedAlias) for flag in a.option_strings}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    """The options a hint may name: visible ones (not a deprecated name) and the global ones."""
    return set(_options(parser)) | {"-v", "--verbose", "--version"}


def test_every_command_has_quiet() -> None:
    missing = [c for c, p in COMMANDS.items() if _options(p).get("-q") is None
               or _options(p)["-q"].option_strings != ["-q", "--quiet"] or _options(p)["-q"].dest != "quiet"]
    assert not missing, f"commands without -q/--quiet: {missing}"


#: Commands that write no output of their own naming: merge (its argument is the run it combines in place), serve
#: (answers requests), dataset check (a report on stdout), dataset split (labels written into the store itself).
NO_OUTPUT = {"merge", "serve", "dataset check", "dataset split"}


def test_outputs_are_o_output_with_one_metavar_per_kind_and_checked_names() -> None:
    for command, parser in COMMANDS.items():
        options = _options(parser)
        if command in NO_OUTPUT:
            assert "--output" not in options, command
            continue
        action = options.get("--output")
        assert action is not None and action.option_strings == ["-o", "--output"], command
        metavars = action.metavar.split("|")
        assert all(m == "OUTDIR" or re.fullmatch(r"OUT\.[a-z0-9]+", m) for m in metavars), (command, action.metavar)
        suffixes = {m[3:] for m in metavars if m != "OUTDIR"}
        if suffixes and "OUTDIR" not in metavars:  # a single file: its name is checked while parsing
            assert suffixes <= set(getattr(action.type, "suffixes", ())), (command, action.type)
    # the same holds for every other option naming a single file written
    for command, parser in COMMANDS.items():
        for action in parser._actions:
            if isinstance(action.metavar, str) and action.metavar.startswith("OUT.") and action.dest != "output":
                assert hasattr(action.type, "suffixes"), (command, action.option_strings)


def test_device_and_dtype_are_one_option_wherever_a_model_runs() -> None:
    for command, parser in COMMANDS.items():
        options = _options(parser)
        if "--device" in options:
            device = options["--device"]
            assert (device.help, device.metavar, device.default in ("auto", None)) == (DEVICE_HELP, "DEVICE", True), \
                command
        # finetune trains (its --precision is autocast); compare-dms's --model names a score column, runs nothing
        runs_model = "--model" in options and command not in ("finetune", "compare-dms")
        if runs_model:
            dtype = options.get("--dtype")
            assert dtype is not None and dtype.default == "float32", command
            assert "--device" in options, command
            assert [dtype.type(name) for name in ("float32", "bfloat16", "float16", "bf16")] == [*DTYPES, "bfloat16"]
            if "--model-select" in options:  # the kind of a training checkpoint: the same choices everywhere
                assert tuple(options["--model-select"].choices) == ("esmdance", "seqdance"), command


#: Options whose values differ in meaning between commands, so their metavars differ on purpose.
METAVAR_DIFFERENCES = {
    "--output": "a folder or a file of a kind (checked above)",
    "--model": "SOURCE, or [NAME=]SOURCE where several models are compared (probe, finetune), or compare-dms's "
               "NAME=COLUMN",
    "--split": "a split LABEL of a store, or finetune's fold SCHEME",
    "--label": "a split LABEL (dataset homology) or a label COLUMN (probe)",
    "--labels": "a label table, or for finetune also a ProteinGym folder",
    "--chain": "the structure chains of a prediction's chains (map) or of the one wild type (compare)",
}


def test_metavars_are_explicit_and_one_per_option() -> None:
    seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for command, parser in COMMANDS.items():
        for flag, action in _options(parser).items():
            if not flag.startswith("--") or action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue
            assert action.metavar is not None or action.choices is not None, (command, flag)
            if action.metavar is not None:  # (choices are shown as they are: each command's own)
                seen[flag][action.metavar].append(command)
    differing = {flag: dict(uses) for flag, uses in seen.items() if len(uses) > 1 and flag not in METAVAR_DIFFERENCES}
    assert not differing, differing
    for flag, meaning in (("--store", "STORE.h5"), ("--seed", "N"), ("--batch-size", "N"), ("--workers", "N"),
                          ("--shard", "i/N"), ("--device", "DEVICE"), ("--index", "CSV")):
        assert set(seen[flag]) == {meaning}, (flag, dict(seen[flag]))


def test_deprecated_names_warn_reach_the_new_option_and_are_in_the_changelog(tmp_path, capsys) -> None:
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text()
    found = {}
    for command, parser in COMMANDS.items():
        for action in parser._actions:
            if isinstance(action, DeprecatedAlias):
                found[(command, action.option_strings[0])] = action
    assert {("score", "--no-progress"), ("benchmark-dms", "--no-progress"), ("benchmark-dms", "--restart"),
            ("features md", "--no-progress"), ("features nma", "--out-dir"), ("features nma", "--model"),
            ("evaluate", "--precision")} <= set(found)
    for (command, old), action in found.items():
        assert re.search(rf"(?<![\w-]){old}(?![\w-])", changelog), f"{command} {old} is not in CHANGELOG.md"
        assert action.canonical in _flags(COMMANDS[command]), (command, old)
    # one of each kind, parsed: the warning names the new option and the value lands where the new one puts it
    args = build_parser().parse_args(["score", "--model", "m", "--sequence", "MK", "--saturation", "-o", "x.csv",
                                      "--no-progress"])
    assert args.quiet is True
    args = build_parser().parse_args(["evaluate", "--model", "m", "--store", "s.h5", "-o", "e", "--precision", "bf16"])
    assert args.dtype == "bfloat16"
    err = capsys.readouterr().err
    assert "--no-progress is deprecated and will be removed; use --quiet" in err
    assert "--precision is deprecated and will be removed; use --dtype" in err


# --- hints name options that exist --------------------------------------------------------------------------------

#: Library modules (by prefix) -> the commands whose options their messages may name; each named option must exist
#: in every one of them. CLI modules are checked against the commands they register.
LIBRARY_COMMANDS: dict[str, tuple[str, ...]] = {
    "app.": ("serve",),
    "report.": ("report",),
    "finetuning.": ("finetune",),
    "features.md.": ("features md",),
    "features.inputs.": ("features md",),
    "features.nma.": ("features nma",),
    "inference.records": ("predict", "embed"),
    "inference.runs": ("predict", "embed"),
    "inference.embedding_store": ("embed",),
    "inference.sharding": ("predict", "embed", "score", "compare", "benchmark-dms", "analyze attention"),
    "inference.sharded_run": ("predict", "embed", "score", "compare", "benchmark-dms", "analyze attention"),
    "train.trainer": ("train",),
    "scoring.proteins": ("score",),
    "scoring.single": ("score",),
    "scoring.dms_compare": ("compare-dms",),
    "scoring.dms": ("benchmark-dms",),
    "scoring.compare": ("compare",),
    "scoring.proteingym": ("benchmark-dms",),
    "model.": ("predict", "embed", "score", "benchmark-dms", "evaluate", "analyze attention", "probe", "serve"),
}
#: CLI helper modules that register no command -> the commands that use them.
CLI_HELPERS = {"scoring_options": ("score", "compare", "benchmark-dms"), "run_options": ("predict", "embed", "score",
               "compare", "benchmark-dms", "analyze attention"), "report": ("report", "predict", "score", "compare")}
#: Flags of other programs quoted in messages and help (torchrun, pip, MMseqs2).
FOREIGN_FLAGS = {"--nproc_per_node", "--no-python", "--force-reinstall", "--min-seq-id", "--cov-mode",
                 "--seq-id-mode", "--help"}
FLAG = re.compile(r"(?<![\w-])(--?[a-z][a-z0-9_-]*[a-z0-9])")


def _strings(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            out.append("{}".join(v.value for v in node.values if isinstance(v, ast.Constant)))
    return out


def _named_flags(text: str, default: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """(flag, commands it must exist in) for every long option in ``text``; a flag inside a quoted command line
    ("seqdance COMMAND ... --flag", up to the next punctuation) belongs to that command."""
    commands = sorted(COMMANDS, key=len, reverse=True)
    spans = []
    for mention in re.finditer(r"seqdance ([a-z-]+(?: [a-z-]+)?)([^;,()'`\n]*)", text):
        words = mention.group(1)
        named = next((c for c in commands if words == c or words.startswith(c + " ")), None)
        if named is not None:
            spans.append((mention.start(), mention.end(), named))
    out = []
    for match in FLAG.finditer(text):
        flag = match.group(1)
        if not flag.startswith("--") or flag in FOREIGN_FLAGS:
            continue
        owner = next(((named,) for start, end, named in spans if start <= match.start() < end), default)
        out.append((flag, owner))
    return out


def _cli_module_commands() -> dict[str, tuple[str, ...]]:
    mapping: dict[str, tuple[str, ...]] = dict(CLI_HELPERS)
    for name in ("predict", "embed", "structure_map", "score", "compare", "benchmark_dms", "compare_dms", "merge",
                 "features_md", "features_nma", "dataset", "dataset_split", "dataset_labels", "train", "analyze",
                 "probe", "serve", "finetune", "report"):
        module = __import__(f"seqdance.cli.{name}", fromlist=["register"])
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers(dest="c")
        if name in ("features_md", "features_nma", "dataset_split", "dataset_labels"):
            prefix = {"features_md": "features", "features_nma": "features"}.get(name, "dataset")
            module.register(sub)
            mapping[name] = tuple(f"{prefix} {n}" for n in sub.choices)
        else:
            module.register(sub)
            names = []
            for top in sub.choices:
                names += [c for c in COMMANDS if c == top or c.startswith(top + " ")]
            mapping[name] = tuple(dict.fromkeys(names + list(mapping.get(name, ()))))
    return mapping


def test_every_hint_names_an_option_the_command_has() -> None:
    problems = []
    cli = _cli_module_commands()
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        if module.startswith("cli."):
            name = module.removeprefix("cli.")
            if name in ("main", "options", "__init__", "features"):
                continue
            default = cli[name]
            every = False  # a CLI module's strings belong to one of its commands
        else:
            default = next((cmds for prefix, cmds in LIBRARY_COMMANDS.items() if module.startswith(prefix)), ())
            every = True
        for text in _strings(path):
            if FLAG.fullmatch(text):  # an option's own name (add_argument, a deprecated alias), not a hint
                continue
            for flag, owners in _named_flags(text, default):
                if not owners:
                    continue
                has = [flag in _flags(COMMANDS[c]) for c in owners]
                if not (all(has) if every and owners == default else any(has)):
                    problems.append(f"{module}: {flag} ({', '.join(c for c, h in zip(owners, has) if not h)}): "
                                    f"{text[:100]!r}")
    assert not problems, "\n".join(problems)


def _offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    return env


def test_offline_hints_name_the_options_of_the_command_that_failed(tmp_path) -> None:
    """The finding: probe's offline hint named --esm2, which probe does not have."""
    (tmp_path / "in.fasta").write_text(">p\nMKTAYIAKQRQISFVK\n")
    (tmp_path / "labels.csv").write_text("name,sequence,y\n" + "".join(f"p{i},MKTAYIAK{'A' * i},{i}\n"
                                                                   for i in range(8)))
    runs = {  # (predict: tests/test_first_run.py)
        "score": ["score", "--model", "nobody/not-a-model", "--sequence", "MKTAY", "--saturation", "-o", "s.csv"],
        "analyze attention": ["analyze", "attention", "--model", "nobody/not-a-model", "--store", "s.h5", "-o", "a"],
        "probe": ["probe", "--labels", "labels.csv", "--model", "facebook/esm2_t6_8M_UR50D", "-o", "pr"],
    }
    for command, argv in runs.items():
        done = subprocess.run([sys.executable, "-m", "seqdance.cli.main", *argv], cwd=tmp_path,
                              env=_offline_env(tmp_path), capture_output=True, text=True, timeout=300)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, (command, done.stderr)
        assert "Use a local copy instead" in lines[0], lines[0]
        named = set(FLAG.findall(lines[0].split("error:", 1)[1])) - {"--"}
        parser = COMMANDS[command]
        assert named and named <= _flags(parser), (command, named - _flags(parser))
    assert "--esm2 LOCAL_DIR" not in lines[0] and "--model LOCAL_DIR" in lines[0]  # probe names its own option


# --- output names that do not match what is written (finding 13) ------------------------------------------------

@pytest.mark.parametrize("argv, option, kind", [
    (["score", "--model", "m", "--sequence", "MKTAY", "--saturation", "-o", "scan.png"], "-o", "csv"),
    (["score", "--model", "m", "--sequence", "MKTAY", "--saturation", "-o", "scan"], "-o", "csv"),
    (["score", "--model", "m", "--sequence", "MKTAY", "--saturation", "-o", "s.csv", "--heatmap", "s.csv"],
     "--heatmap", "figure"),
    (["embed", "in.fasta", "-o", "emb.npz"], "-o", "hdf5"),
    (["features", "md", "-t", "top.pdb", "-o", "f.csv"], "-o", "npz"),
    (["map", "p.npz", "-s", "x.pdb", "-o", "x.png"], "-o", "structure"),
    (["dataset", "build", "m.csv", "-o", "data.csv"], "-o", "hdf5"),
    (["dataset", "merge", "a.h5", "-o", "all.npz"], "-o", "hdf5"),
    (["dataset", "labels", "data.h5", "-o", "labels.tsv"], "-o", "csv"),
    (["dataset", "split", "data.h5", "--clusters", "c.csv"], "--clusters", "tsv"),
    (["dataset", "split", "data.h5", "--stats", "st.txt"], "--stats", "json"),
    (["loss-weights", "--store", "s.h5", "-o", "w.json"], "-o", "csv"),
    (["report", "run", "-o", "page.pdf"], "-o", "html"),
    (["predict", "in.fasta", "-o", "out", "--report", "r.png"], "--report", "html"),
])
def test_an_output_name_whose_extension_does_not_match_what_is_written_is_a_usage_error(
        tmp_path, monkeypatch, capsys, argv: list[str], option: str, kind: str) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as stop:
        code = int(stop.code)
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = next(line for line in err.splitlines() if "error:" in line)
    assert option in line and f"must end in {OUTPUT_SUFFIXES[kind][0]}" in line, line
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_scoring_several_proteins_into_a_csv_name_is_a_usage_error(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wt.fasta").write_text(">a\nMKTAYIAK\n>b\nGSSGSSEE\n")
    assert main(["score", "--model", "m", "--fasta", "wt.fasta", "--saturation", "-o", "scans.csv"]) == 2
    assert "writes a folder" in capsys.readouterr().err
    assert not (tmp_path / "scans.csv").exists()
