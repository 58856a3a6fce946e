"""No broad ``except`` in ``src`` turns a failure into data: every ``except Exception``, ``except BaseException`` or
bare ``except:`` re-raises, unless it is one of the boundaries docs/architecture.md lists ("Where a broad
``except`` stays"), each with its reason.

A handler re-raises when its last statement is a ``raise`` (``raise``, or ``raise SomeError(...) from exc``: a
third-party reader's failure becoming an error that names the file). Anything else (recording, logging, returning,
``pass``, ``continue``) is an offender unless its module and function are in :data:`BOUNDARIES`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "seqdance"

#: (module path under src/, function qualname or "*" for the whole module) -> why a broad except stays there.
BOUNDARIES: dict[tuple[str, str], str] = {
    ("seqdance/cli/main.py", "run_command"): "the CLI's bug handler: traceback + report request, exit status 70",
    ("seqdance/model/files.py", "hub_unreachable"): "the hub reachability probe: any network failure means "
                                                    "'unreachable', so a download fails at once with one line",
    ("seqdance/parallel.py", "*"): "the parallel engine: a job that raises fails only itself",
    ("seqdance/inference/writer.py", "*"): "the background writer: its error is handed to the producer, "
                                           "which re-raises it (the producer's own error wins)",
    ("seqdance/store/hdf5.py", "DynamicsStore.__del__"): "cleanup at interpreter exit",
    ("seqdance/app/jobs.py", "JobQueue._loop"): "the web app's job worker: a job that raises a bug fails only "
                                                "itself (traceback in the server's log, the page told it is a bug)",
}


def _is_broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException") for n in names)


def _broad_handlers(path: Path) -> list[tuple[int, str, bool]]:
    """(line, enclosing function qualname, re-raises) of each broad handler in one file."""
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, [*scope, child.name])
                continue
            if isinstance(child, ast.ExceptHandler) and _is_broad(child):
                reraises = bool(child.body) and isinstance(child.body[-1], ast.Raise)
                found.append((child.lineno, ".".join(scope) or "<module>", reraises))
            visit(child, scope)

    visit(ast.parse(path.read_text(), filename=str(path)), [])
    return found


def _scan() -> tuple[list[str], set[tuple[str, str]]]:
    offenders: list[str] = []
    used: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE.parent).as_posix()
        for line, scope, reraises in _broad_handlers(path):
            key = next((k for k in ((module, scope), (module, "*")) if k in BOUNDARIES), None)
            if key is not None:
                used.add(key)
            elif not reraises:
                offenders.append(f"src/{module}:{line} in {scope}")
    return offenders, used


def test_broad_excepts_reraise_outside_the_listed_boundaries() -> None:
    offenders, _ = _scan()
    assert not offenders, (
        "broad except that records, returns or passes instead of re-raising (catch the specific errors, let "
        "SeqdanceError alone become a recorded failure, or add a boundary to BOUNDARIES and to "
        "docs/architecture.md with its reason):\n  " + "\n  ".join(offenders)
    )


def test_every_listed_boundary_exists_and_is_documented() -> None:
    _, used = _scan()
    assert set(BOUNDARIES) == used, f"boundaries without a broad except (moved or removed?): {set(BOUNDARIES) - used}"
    text = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text()
    for module, scope in BOUNDARIES:
        dotted = module.removesuffix(".py").replace("/", ".") + ("" if scope == "*" else f".{scope}")
        assert dotted in text, f"docs/architecture.md does not list the boundary {dotted}"


def test_the_scan_sees_what_it_must(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "def a():\n    try:\n        f()\n    except Exception:\n        return None\n"
        "class K:\n    def b(self):\n        try:\n            f()\n        except (ValueError, BaseException) as e:\n"
        "            raise RuntimeError('x') from e\n"
        "def c():\n    try:\n        f()\n    except:\n        pass\n"
        "def d():\n    try:\n        f()\n    except ValueError:\n        pass\n"
    )
    assert _broad_handlers(source) == [(4, "a", False), (10, "K.b", True), (15, "c", False)]
