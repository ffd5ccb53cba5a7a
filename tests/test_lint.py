import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_lint_and_format_are_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def _sources(*folders: str) -> list[Path]:
    files = [ROOT / "app.py"] if "." in folders else []
    for folder in folders:
        if folder != ".":
            files += sorted((ROOT / folder).rglob("*.py"))
    return files


def test_no_private_gradio_names_and_no_patching_of_gradio():
    """Gradio through its public API only: no `gradio.<module>` internals imported, no attribute of a gradio
    module or class assigned (an upgrade must not break the app silently)."""
    import re

    private = re.compile(r"^\s*(from gradio\.\w+|import gradio\.\w+)|gr\.\w+\.\w+\s*=[^=]|gradio\.\w+\.\w+\s*=[^=]")
    files = _sources(".", "pipeline", "train", "bench", "scripts")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in files
             for i, line in enumerate(p.read_text().splitlines(), 1) if private.search(line)]  # fmt: skip
    assert not found, found


def test_no_sys_path_edits_and_nothing_outside_tests_imports_tests():
    found = []
    for p in _sources(".", "pipeline", "train", "bench", "scripts", "tests"):
        text = p.read_text()
        if "sys.path" in text and p.name != "test_lint.py":
            found.append(f"{p.relative_to(ROOT)} edits sys.path")
        if p.parent.name != "tests" and ("from tests" in text or "import tests" in text):
            found.append(f"{p.relative_to(ROOT)} imports from tests/")
    assert not found, found


def test_no_function_over_80_lines_outside_tests():
    import ast

    long = []
    for p in _sources(".", "pipeline", "train", "bench", "scripts"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1}")
    assert not long, long
    assert len((ROOT / "app.py").read_text().splitlines()) < 300


def test_the_pipeline_package_has_no_import_cycle_and_the_app_reads_capabilities():
    """Imports between pipeline/ modules (at module level or inside functions) form no cycle; the app never
    compares generator kinds."""
    import ast

    graph = {}
    for p in sorted((ROOT / "pipeline").glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                names |= {node.module} if node.module != "pipeline" else {f"pipeline.{a.name}" for a in node.names}
        graph[f"pipeline.{p.stem}"] = {n for n in names if n != f"pipeline.{p.stem}"}

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))

    cycles = [m for m in graph if m != "pipeline.__init__" and reaches(m, m)]
    assert not cycles, cycles
    app = (ROOT / "app.py").read_text()
    assert ".kind ==" not in app and ".kind !=" not in app and '== "gan"' not in app
