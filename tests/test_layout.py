"""The code's layout, read from the source: search/ imports in one direction (no cycle, function-level and
type-checking imports included), the leaves import no other part of nas-run, and only record.py (with export.py,
the checkpoint writer) reads or writes what a study stores."""
from __future__ import annotations

import ast
import re

from helpers import ROOT

SEARCH = ROOT / "search"
LEAVES = {"catalogue": set(), "errors": set(), "measure": {"catalogue"}, "study_view": set()}  # module -> the search modules it may import


def import_graph() -> dict[str, set[str]]:
    """search module -> the search modules it imports anywhere in its source (top level, in functions, under
    TYPE_CHECKING)."""
    graph = {}
    for path in sorted(SEARCH.glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "search":
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("search."):
                deps.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("search.")}
        graph[path.stem] = deps - {path.stem}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, as the modules along it."""
    found, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                found.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_search_has_no_import_cycle():
    graph = import_graph()
    assert {"record", "run", "budget", "deploy", "export", "data", "space"} <= set(graph)  # the graph was read
    assert cycles(graph) == []


def test_the_leaves_import_no_other_part_of_nas_run():
    graph = import_graph()
    for module, allowed in LEAVES.items():
        assert graph[module] <= allowed, module
    imported = {a.name for n in ast.walk(ast.parse((SEARCH / "catalogue.py").read_text()))
                if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(ast.parse((SEARCH / "catalogue.py").read_text()))
                 if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m.split(".")[0] == "torch"}  # the space parser reads it without torch


def test_only_record_py_reads_or_writes_stored_attrs():
    """A trial's or the study's user attrs, and a candidate's or recipe's keys, are read through record.py's typed
    records everywhere else (enqueueing passes record.py's own attr dicts through)."""
    pattern = re.compile(r"\.user_attrs\b(?!=)|set_user_attr\(|\bcand\[|\brecipe\[|\[\"(train|augment)\"\]")
    offenders = [f"{path.name}:{i}: {line.strip()}" for path in sorted(SEARCH.glob("*.py")) if path.name != "record.py"
                 for i, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
