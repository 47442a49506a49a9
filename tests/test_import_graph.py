"""No module of medact imports one that imports it back, directly or through others (lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("action", "shared", "medseg")


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (``from a import b`` counts ``a`` and ``a.b``)."""
    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files[name] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_finder_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert "a" in reachable(graph, "a") and "d" not in reachable(graph, "d")


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert {"action.train", "action.models.features", "action.training_data", "shared.engine"} <= set(graph)
    assert "action.training_data" in graph["action.models.features"]  # the graph holds real edges
    cycles = sorted(name for name in graph if name in reachable(graph, name))
    assert cycles == [], f"modules on an import cycle: {cycles}"


# what segmentation training must never load: the mask exports (slicerio, DICOM SEG via highdicom) and the servers
EXPORT_STACK = ("medseg.io.export", "medseg.io.dicom_seg", "medseg.web", "slicerio", "highdicom", "fastapi", "starlette", "uvicorn")


def external_imports(package_root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the top-level names of everything it imports (project and third-party), lazy imports included."""
    out: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (package_root / package).rglob("*.py"):
            name = ".".join(path.relative_to(package_root).with_suffix("").parts).removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found |= {alias.name for alias in node.names}
            out[name] = found
    return out


def training_modules() -> set[str]:
    """The modules ``train.json`` names (its ``_target_``s), the CLI's ``train`` command and the runner."""
    import json

    config = (ROOT / "bundles" / "vnet_seg" / "configs" / "train.json").read_text(encoding="utf-8")
    targets: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("_target_"), str):
                targets.add(node["_target_"].rpartition(".")[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(config))
    return {t for t in targets if t.startswith(("medseg", "shared"))} | {"medseg.cli.train", "medseg.workflow"}


def test_segmentation_training_never_imports_the_export_dicom_seg_or_web_stack() -> None:
    graph, imports = import_graph(), external_imports()
    # A cascade bundle's training runs its coarse stage's inference (medseg.inference.cascade, imported only then,
    # inside medseg.cli.train._train_cascade): a one-stage bundle's training, which this guards, never takes that edge.
    graph = {**graph, "medseg.cli.train": graph["medseg.cli.train"] - {"medseg.inference.cascade"}}
    # Training's last step (medseg.evaluation.decide) segments its validation cases with Segmenter.segment; only
    # Segmenter.segment_files imports the export stack, inside itself (the test below runs that import for real).
    inside_segment_files = {"medseg.io.export", "medseg.io.dicom_seg"}
    graph["medseg.inference.segmenter"] = graph["medseg.inference.segmenter"] - inside_segment_files
    imports = {**imports, "medseg.inference.segmenter": imports["medseg.inference.segmenter"] - inside_segment_files}
    starts = training_modules()
    assert {"medseg.networks", "medseg.transforms", "medseg.inference.inferer", "medseg.model_record"} <= starts
    loaded = set().union(*(reachable(graph, s) | {s} for s in starts))
    names = set().union(*(imports[m] for m in loaded))
    assert "medseg.io.reader" in loaded and "monai.inferers" in names  # the walk sees real edges and third-party names
    offending = sorted(n for n in names | loaded if any(n == bad or n.startswith(bad + ".") for bad in EXPORT_STACK))
    assert offending == [], f"training reaches the export stack: {offending}"


def test_the_post_processing_decision_of_training_loads_no_export_module() -> None:
    """What the graph above leaves out, checked by importing: the decision's modules load no export stack."""
    import subprocess
    import sys

    modules = "medseg.evaluation.decide, medseg.inference.segmenter, medseg.inference.trained"
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in {EXPORT_STACK!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
