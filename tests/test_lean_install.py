"""The lean core install: predict, embed and score run without any optional package; a command that needs one
says in one line which ``pip install "seqdance[...]"`` to run; pyproject's extras and ``seqdance.extras`` agree.

The optional packages are made unimportable in subprocesses by a ``sitecustomize`` that hides them from Python's
path finder (``importlib.util.find_spec`` answers None for them, as in an environment where they were never
installed). The real check in a fresh virtualenv is described in docs/architecture.md (optional dependencies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from seqdance import extras
from seqdance.cli.main import BUG_EXIT_CODE, run_command

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"

#: Distribution name in pyproject -> the top-level modules it installs (for the optional packages).
DIST_MODULES: dict[str, tuple[str, ...]] = {
    "mdtraj": ("mdtraj",), "numba": ("numba",), "gemmi": ("gemmi",), "scikit-learn": ("sklearn",),
    "matplotlib": ("matplotlib",), "dask": ("dask", "distributed"), "tensorboard": ("tensorboard",),
    "mdanalysis": ("MDAnalysis",), "openmm": ("openmm",), "pypulchra": ("pypulchra",), "pulchra": ("pulchra",),
    "plotly": ("plotly",), "fastapi": ("fastapi",), "uvicorn": ("uvicorn",),
    "python-multipart": ("multipart",), "orjson": ("orjson",), "proteingym": ("proteingym",),
}

HIDER = '''
import importlib.machinery, sys
HIDDEN = frozenset({hidden!r})
class _Hiding:
    """Python's path finder, blind to the hidden top-level packages."""
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        return self.inner.find_spec(name, path, target)
    def invalidate_caches(self):
        self.inner.invalidate_caches()
    def find_distributions(self, *args, **kwargs):
        return self.inner.find_distributions(*args, **kwargs)
sys.meta_path[:] = [_Hiding(f) if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
'''

#: Everything optional, plus the test-only libraries (none of them may be needed by the core commands).
HIDDEN = sorted(extras.OPTIONAL_MODULES | {"prody", "transformers", "MDAnalysisTests"})


def _requirement_name(text: str) -> tuple[str, list[str]]:
    """('name', [extras]) of a requirement string such as ``dask[distributed]>=2024.1``."""
    head = text.split(";")[0]
    for sep in "<>=!~ ":
        head = head.split(sep)[0]
    name, _, rest = head.partition("[")
    return name.strip().lower(), [e.strip() for e in rest.rstrip("]").split(",") if e.strip()]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _extra_requirements(optional: dict[str, list[str]], extra: str) -> set[str]:
    """Distribution names an extra installs, following ``seqdance[...]`` self-references."""
    out: set[str] = set()
    for text in optional[extra]:
        name, nested = _requirement_name(text)
        if name == "seqdance":
            for inner in nested:
                out |= _extra_requirements(optional, inner)
        else:
            out.add(name)
    return out


def test_pyproject_extras_match_the_table() -> None:
    project = _pyproject()["project"]
    optional = project["optional-dependencies"]
    core = {_requirement_name(r)[0] for r in project["dependencies"]}
    assert not core & set(DIST_MODULES), f"optional packages in the core dependencies: {core & set(DIST_MODULES)}"
    assert {"torch", "numpy", "safetensors", "huggingface_hub", "h5py", "tqdm"} <= core
    for extra, modules in extras.EXTRAS.items():
        provided = {m for dist in _extra_requirements(optional, extra) for m in DIST_MODULES.get(dist, ())}
        assert set(modules) <= provided, f"[{extra}] lacks the packages of {set(modules) - provided}"
    runtime = set(extras.EXTRAS) - {"backmap"}  # [all] needs no compiler: the pure-Python PULCHRA port instead
    everything = _extra_requirements(optional, "all")
    for extra in runtime:
        assert _extra_requirements(optional, extra) <= everything, f"[all] lacks [{extra}]"
    assert "pulchra" in everything and "pypulchra" not in everything
    assert everything | {"pypulchra"} <= _extra_requirements(optional, "test")
    for module, extra in extras.MODULE_EXTRA.items():
        assert extra == "all" or module in extras.EXTRAS[extra]
    for pattern in _pyproject()["tool"]["setuptools"]["package-data"]["seqdance"]:  # each names shipped files
        assert list((SRC / "seqdance").glob(pattern)), f"package-data {pattern!r} matches no file"


def test_core_modules_import_no_optional_package() -> None:
    """Every module outside ``seqdance.features`` and the web app's FastAPI module imports optional packages only
    inside the functions using them."""
    code = (
        "import importlib, pkgutil, sys, json\n"
        "import seqdance\n"
        "names = [m.name for m in pkgutil.walk_packages(seqdance.__path__, 'seqdance.')\n"
        "         if not m.name.startswith('seqdance.features.') and m.name != 'seqdance.app.server']\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "from seqdance.cli.main import build_parser\n"
        "build_parser()\n"
        f"optional = {sorted(extras.OPTIONAL_MODULES)!r}\n"
        "print(json.dumps({'modules': len(names), 'loaded': sorted(m for m in optional if m in sys.modules)}))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["modules"] > 50
    assert report["loaded"] == [], f"imported at module level: {report['loaded']}"


@pytest.fixture(scope="module")
def lean_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a subprocess in which the optional packages cannot be imported."""
    hider = tmp_path_factory.mktemp("hider")
    (hider / "sitecustomize.py").write_text(HIDER.format(hidden=HIDDEN))
    paths = [str(hider), str(SRC), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), OMP_NUM_THREADS="1")


def _seqdance(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "seqdance.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_the_hider_hides(lean_env: dict[str, str]) -> None:
    code = "import importlib.util as u, json; print(json.dumps([u.find_spec(m) is None for m in ('mdtraj', 'numpy')]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=lean_env, timeout=60)
    assert json.loads(out.stdout) == [True, False], out.stderr


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _checkpoints import random_dynamics_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    random_dynamics_model("tiny").save_pretrained(path)
    return path


def test_predict_embed_score_run_without_optional_packages(lean_env: dict[str, str], tiny_model: Path,
                                                           tmp_path: Path) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n>b\nMSTNPKPQRKTKRNTNRRPQDVKFPGG\n")
    model = str(tiny_model)

    out = _seqdance(lean_env, "predict", str(fasta), "--model", model, "-o", str(tmp_path / "pred"), "-q")
    assert out.returncode == 0, out.stderr
    with np.load(tmp_path / "pred" / "a.npz") as data:
        rmsf = data["rmsf_nor"]
    assert rmsf.shape == (33,) and np.isfinite(rmsf).all()

    out = _seqdance(lean_env, "embed", str(fasta), "--model", model, "-o", str(tmp_path / "emb.h5"), "-q")
    assert out.returncode == 0, out.stderr
    import h5py

    with h5py.File(tmp_path / "emb.h5", "r") as fh:
        assert len(fh["mean"]) == 2

    scan = tmp_path / "scan.csv"
    out = _seqdance(lean_env, "score", "--model", model, "--sequence", "MKTAYIAKQR", "--saturation", "-o", str(scan),
                    "-q")
    assert out.returncode == 0, out.stderr
    import pandas as pd

    table = pd.read_csv(scan)
    assert len(table) == 10 * 19 and np.isfinite(table["score"]).all()


def _one_line_hint(out: subprocess.CompletedProcess[str], prefix: str, extra: str) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, out.stderr
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"{prefix}: error: ") and lines[0].endswith(f'pip install "seqdance[{extra}]"')
    return lines[0]


def test_commands_needing_an_extra_name_it(lean_env: dict[str, str], shared_data: Path, tiny_model: Path,
                                           tmp_path: Path) -> None:
    md = shared_data / "reference" / "md"
    top, traj = require(md / "3tvj_I.pdb"), require(md / "3tvj_I_10frames.dcd")
    line = _one_line_hint(_seqdance(lean_env, "features", "md", "-t", str(top), "-x", str(traj), "-o",
                                    str(tmp_path / "f.npz")), "seqdance features md", "md")
    assert "mdtraj" in line and "numba" in line
    assert not (tmp_path / "f.npz").exists()

    structure = require(shared_data / "reference" / "nma" / "2g3r.pdb")
    line = _one_line_hint(_seqdance(lean_env, "features", "nma", str(structure), "-o", str(tmp_path / "nma")),
                          "seqdance features nma", "nma")
    assert "gemmi" in line

    prediction = tmp_path / "p.npz"
    out = _seqdance(lean_env, "map", str(prediction), "--structure", str(structure), "--property", "rmsf_nor",
                    "-o", str(tmp_path / "x.pdb"))
    assert "gemmi" in _one_line_hint(out, "seqdance map", "structure")

    scan = tmp_path / "scan.csv"
    out = _seqdance(lean_env, "score", "--model", str(tiny_model), "--sequence", "MKTAYIAKQR", "--saturation",
                    "-o", str(scan), "--heatmap", str(tmp_path / "scan.png"), "-q")
    assert "score --heatmap needs matplotlib" in _one_line_hint(out, "seqdance score", "plots")
    assert not scan.exists()  # refused before any computation

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    out = _seqdance(lean_env, "predict", str(fasta), "--model", str(tiny_model), "-o", str(tmp_path / "p"), "--plots")
    assert "predict --plots needs matplotlib" in _one_line_hint(out, "seqdance predict", "plots")

    labels = tmp_path / "labels.csv"
    labels.write_text("name,sequence,rg\na,MKTAYIAKQR,1.0\n")
    out = _seqdance(lean_env, "probe", "--labels", str(labels), "--model", str(tiny_model), "-o", str(tmp_path / "pr"))
    assert "sklearn" in _one_line_hint(out, "seqdance probe", "analysis")

    # ProteinGym's own tables need the proteingym extra: benchmark-dms with a ProteinGym reference file, compare-dms
    assays = tmp_path / "dms"
    assays.mkdir()
    (assays / "A.csv").write_text("mutant,DMS_score\nM1A,0.5\nK2A,0.1\n")
    reference = tmp_path / "DMS_substitutions.csv"
    reference.write_text("DMS_id,target_seq,UniProt_ID,coarse_selection_type,MSA_Neff_L_category,taxon\n"
                         "A,MKTAYIAKQR,A_HUMAN,Stability,high,Human\n")
    out = _seqdance(lean_env, "benchmark-dms", "--model", str(tiny_model), "--assays", str(assays), "--reference-file",
                    str(reference), "-o", str(tmp_path / "bench"), "-q")
    assert "proteingym" in _one_line_hint(out, "seqdance benchmark-dms", "proteingym")
    assert not (tmp_path / "bench").exists()
    out = _seqdance(lean_env, "compare-dms", "--scores", str(assays), "--reference-file", str(reference), "--model",
                    "a=DMS_score", "--model", "b=DMS_score", "-o", str(tmp_path / "cmp"))
    assert "proteingym" in _one_line_hint(out, "seqdance compare-dms", "proteingym")


def test_python_users_get_a_seqdance_error(lean_env: dict[str, str]) -> None:
    code = (
        "import json\n"
        "from seqdance.errors import SeqdanceError\n"
        "try:\n"
        "    from seqdance.features import extract_md\n"
        "except SeqdanceError as exc:\n"
        "    print(json.dumps([isinstance(exc, ImportError), exc.extra, str(exc)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=lean_env, timeout=120)
    assert out.returncode == 0, out.stderr
    is_import_error, extra, message = json.loads(out.stdout)
    assert is_import_error and extra == "md"
    assert message == ('seqdance.features.extract_md needs mdtraj and numba, which are not installed: '
                       'pip install "seqdance[md]"')


def test_evaluation_report_without_matplotlib_warns_and_writes_the_tables(lean_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    code = (
        "import logging, sys, pandas as pd\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format='%(levelname)s %(message)s')\n"
        "from seqdance.train.evaluate import EvaluationResult, write_report\n"
        "per = pd.DataFrame({'group': ['md'], 'source': ['ATLAS'], 'name': ['a'], 'r_rmsf_nor': [0.5]})\n"
        "losses = pd.DataFrame({'group': ['md'], 'property': ['total'], 'rmse': [1.0]})\n"
        "metrics = pd.DataFrame({'group': ['md'], 'metric': ['r'], 'median_r': [0.5]})\n"
        f"paths = write_report(EvaluationResult(per, losses, metrics), {str(tmp_path)!r})\n"
        "print(sorted(paths))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=lean_env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "evaluation.png not drawn: matplotlib is not installed" in out.stdout
    assert 'pip install "seqdance[plots]"' in out.stdout
    assert (tmp_path / "per_protein.csv").is_file() and not (tmp_path / "evaluation.png").exists()
    assert "'plot'" not in out.stdout


def _raiser(exc: BaseException):
    def func(args: argparse.Namespace) -> int:
        raise exc

    return func


@pytest.mark.parametrize(("module", "extra"), [("matplotlib", "plots"), ("gemmi.cif", "structure"),
                                               ("sklearn.linear_model", "analysis")])
def test_run_command_names_the_extra_of_a_missing_package(capsys: pytest.CaptureFixture[str], module: str,
                                                          extra: str) -> None:
    """A ModuleNotFoundError raised inside a command (not foreseen by the up-front check) becomes one line; under
    ``seqdance map`` a missing gemmi names [structure], the command's own extra."""
    args = argparse.Namespace(command="map", verbose=0)
    code = run_command(_raiser(ModuleNotFoundError(f"No module named {module!r}", name=module)), args, "seqdance map")
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == (f"seqdance map: error: map needs {module.partition('.')[0]}, which is not installed: "
                   f'pip install "seqdance[{extra}]"')


def test_run_command_treats_other_missing_modules_as_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(command="predict", verbose=0)
    code = run_command(_raiser(ModuleNotFoundError("No module named 'numpyy'", name="numpyy")), args,
                       "seqdance predict")
    err = capsys.readouterr().err
    assert code == BUG_EXIT_CODE
    assert "Traceback" in err and "this is a bug in seqdance" in err


def test_up_front_check_uses_nested_command_names() -> None:
    args = argparse.Namespace(command="features", features_command="md", plots=False)
    assert extras.command_name(args) == "features md"
    assert extras.command_requirements(args) == [("md", ("mdtraj", "numba"))]
    args = argparse.Namespace(command="score", heatmap="x.png")
    assert extras.command_requirements(args) == [("plots", ("matplotlib",))]
    assert extras.command_requirements(argparse.Namespace(command="score", heatmap=None)) == []
    err = extras.missing_extra_error("features md", "md", ["mdtraj", "numba", "gemmi"])
    assert str(err) == 'features md needs mdtraj, numba and gemmi, which are not installed: pip install "seqdance[md]"'
    assert err.name == "mdtraj" and err.modules == ("mdtraj", "numba", "gemmi")
