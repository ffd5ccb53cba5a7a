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
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if private.search(line)
    ]
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


# The layers, lowest first: a module may import its own layer and the ones below, never one above.
LAYERS = {"pipeline": 0, "train": 1, "app": 2, "scripts": 2, "bench": 3}
GRADIO_FILES = {"app.py", "pipeline/ui.py", "train/tab.py"}  # the page, its widget helpers and the Train tab


def _module_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, at module level or inside functions."""
    import ast

    files = [ROOT / "app.py"] + [
        p for top in ("pipeline", "train", "scripts", "bench") for p in (ROOT / top).rglob("*.py")
    ]
    mods = {}
    for p in files:
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports mod; the package's own __init__ is not counted as a dependency
                found = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module for a in node.names
                ]
            for dep in found:
                while dep and dep not in mods:
                    dep = dep.rpartition(".")[0]
                if dep and dep != name:
                    deps.add(dep)
        graph[name] = deps
    return graph


def test_no_module_imports_a_layer_above_its_own():
    graph = _module_graph()
    up = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if LAYERS[m.split(".")[0]] < LAYERS[d.split(".")[0]]]
    assert not up, up


def test_the_repository_has_no_import_cycle():
    """No module reaches itself through the imports of others (a package importing its own children is not a
    cycle: its children never import it back)."""
    graph = _module_graph()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo += graph.get(m, ())
        return False

    cycles = [m for m in graph if reaches(m, m)]
    assert not cycles, cycles


def test_gradio_is_imported_by_the_page_files_only():
    import ast

    found = []
    for p in [
        ROOT / "app.py",
        *(p for top in ("pipeline", "train", "bench", "scripts") for p in (ROOT / top).rglob("*.py")),
    ]:
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if any(n == "gradio" or n.startswith("gradio.") for n in names):
                found.append(str(p.relative_to(ROOT)))
    assert set(found) <= GRADIO_FILES, sorted(set(found) - GRADIO_FILES)


def test_no_code_compares_world_names_outside_the_registry():
    """The code that uses a world asks its object (pipeline/worlds): no `== "icons"` or `"shapes" !=` anywhere but
    the registry itself."""
    import re

    compare = re.compile(r"""(==|!=)\s*["'](icons|shapes)["']|["'](icons|shapes)["']\s*(==|!=)""")
    files = [
        ROOT / "app.py",
        *(p for top in ("pipeline", "train", "bench", "scripts") for p in (ROOT / top).rglob("*.py")),
    ]
    found = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        if p != ROOT / "pipeline" / "worlds" / "__init__.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if compare.search(line)
    ]
    assert not found, found


def test_at_most_a_handful_of_format_skips():
    """ruff formats the code; a table that reads better by hand may opt out, a handful of times at most."""
    files = [
        ROOT / "app.py",
        *(p for top in ("pipeline", "train", "bench", "scripts", "tests") for p in (ROOT / top).rglob("*.py")),
    ]
    skips = sum(p.read_text().count("fmt: " + "skip") for p in files)
    assert skips <= 10, skips


def test_the_app_reads_capabilities():
    """The app never compares generator kinds: it reads what the pipeline declares."""
    app = (ROOT / "app.py").read_text()
    assert ".kind ==" not in app and ".kind !=" not in app and '== "gan"' not in app
