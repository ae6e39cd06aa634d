"""The import architecture (docs/architecture.md): one-way layers, no circles, and lazy imports only
where a heavy dependency is kept off a path that does not need it.

The layer and no-circle contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are
checked here with import-linter, which reads every import statement, those inside functions
included: a new upward import or circle fails the suite, not only a lint run.
"""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audit", "cohorts", "generators", "reports")
#: third-party packages worth keeping off a path that does not use them (import time, memory)
HEAVY = {"torch", "matplotlib", "onnxruntime", "onnx", "opacus", "monai", "scipy", "sklearn", "skimage", "pandas",
         "nibabel", "jinja2", "rich", "dp_accounting", "PIL", "tqdm", "playwright"}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _function_imports(path: Path) -> list[ast.stmt]:
    tree = ast.parse(path.read_text("utf-8"))
    out: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += [c for c in ast.walk(node) if isinstance(c, (ast.Import, ast.ImportFrom)) and c not in out]
    return out


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_time_packages() -> dict[str, set[str]]:
    """Per project module, the third-party packages that importing it loads (module-level
    imports followed through the project's modules; ``if TYPE_CHECKING`` blocks skipped)."""
    paths = {_module_name(p): p for p in _modules()}
    direct: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set(name.split(".")[:1])
        stack = list(ast.parse(path.read_text("utf-8")).body)
        while stack:
            n = stack.pop()
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
                continue
            if isinstance(n, (ast.If, ast.Try)):
                stack += n.body + n.orelse + [s for h in getattr(n, "handlers", []) for s in h.body]
            elif isinstance(n, ast.Import):
                targets |= {a.name for a in n.names}
            elif isinstance(n, ast.ImportFrom):
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                mod = (".".join(base[:len(base) - n.level + 1] + [n.module or ""]).strip(".")
                       if n.level else n.module or "")
                targets |= {mod} | {f"{mod}.{a.name}" for a in n.names}
        # importing a.b.c runs the packages a and a.b first
        direct[name] = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 2)}
    loaded = {}
    for name in paths:
        seen, stack = set(), [name]
        while stack:
            m = stack.pop()
            if m not in seen:
                seen.add(m)
                stack += direct.get(m, ())
        loaded[name] = {m.split(".")[0] for m in seen} - set(PACKAGES)
    return loaded


def _top(node: ast.stmt) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name.split(".")[0]
    return "." if node.level else (node.module or "").split(".")[0]


def test_import_contracts_hold():
    importlinter = pytest.importorskip("importlinter", reason="import-linter is in the test extra")
    from importlinter import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    assert code == 0, f"import contracts broken (import-linter {importlinter.__name__}):\n{out.getvalue()[-4000:]}"


def test_function_level_imports_are_lazy_heavy_dependencies_with_a_reason():
    """An import inside a function is allowed only to keep a heavy dependency off a light path,
    and says why on its line (``# lazy: <reason>``); a lazy import of a package the module loads
    at import time anyway saves nothing and is refused. Project modules are imported at module
    level, except by the CLI (``audit --help`` must not load torch)."""
    problems = []
    loaded = _import_time_packages()
    for path in _modules():
        rel = path.relative_to(ROOT)
        lines = path.read_text("utf-8").splitlines()
        for node in _function_imports(path):
            where = f"{rel}:{node.lineno}: {ast.unparse(node)}"
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            reason = text.split("# lazy:", 1)[1].strip() if "# lazy:" in text else ""
            top = _top(node)
            if not reason:
                problems.append(f"{where} (no '# lazy: <reason>' comment)")
            elif top in PACKAGES + (".",) and rel.parts[:2] != ("audit", "cli"):
                problems.append(f"{where} (a project module: import it at module level)")
            elif top not in PACKAGES and top not in HEAVY:
                problems.append(f"{where} ({top} is not a heavy dependency: import it at module level)")
            elif top not in PACKAGES and top in loaded[_module_name(path)]:
                problems.append(f"{where} (importing {_module_name(path)} loads {top} already: the lazy import "
                                "saves nothing)")
    assert not problems, "function-level imports:\n" + "\n".join(problems)


def test_the_checker_sees_a_planted_upward_import(tmp_path):
    """The function-level scan finds imports nested in methods and inner functions."""
    f = tmp_path / "m.py"
    f.write_text("class A:\n    def f(self):\n        def g():\n            import json\n        from audit import core\n")
    assert [ast.unparse(n) for n in _function_imports(f)] == ["from audit import core", "import json"]
