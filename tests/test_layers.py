"""Every import points down the layers of docs/architecture.md.

The imports are read from the source with `ast` (nothing is imported), including imports inside
functions: a deferred import still ties the two modules together.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Source folder -> the import name it installs as (pyproject.toml's package-dir).
FOLDERS = {"o1": "o1", "tokenizers": "o1.tokenizers", "train": "o1.train", "serve": "o1.serve",
           "configs": "o1.configs", "benchmarks": "o1.benchmarks"}
# Layers from the bottom up: (name, module prefixes). A module may import modules of its own
# layer and of layers below it, never above it; train and serve stand side by side (rank 3)
# and do not import each other.
LAYERS = (
    ("config", 0, ("o1.config", "o1.configs", "o1.avshapes.world")),
    ("core", 1, ("o1.nn", "o1.sharding", "o1.sequence", "o1.batch", "o1.model", "o1.losses",
                 "o1.flops", "o1.sampler", "o1.checkpoint", "o1.media", "o1.avshapes")),
    ("tokenizers", 2, ("o1.tokenizers",)),
    ("train", 3, ("o1.train",)),
    ("serve", 3, ("o1.serve",)),
    ("eval", 4, ("o1.eval",)),
    ("benchmarks", 5, ("o1.benchmarks",)),
    ("cli", 6, ("o1.cli",)),
)


def layer_of(module: str) -> tuple[str, int]:
    """The layer of a module: the one with the longest matching prefix."""
    best = None
    for name, rank, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[0]:
                    best = (len(prefix), name, rank)
    assert best is not None, f"{module} is in no layer; add it to LAYERS and the docs"
    return best[1], best[2]


def modules() -> dict[str, pathlib.Path]:
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def imports_of(path: pathlib.Path, module: str) -> set[str]:
    """The o1 modules `path` imports (for `from a import b`, `a.b` when that is a module)."""
    known = modules()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return {m for m in found if m == "o1" or m.startswith("o1.")} - {"o1"}


def test_every_module_is_in_a_layer():
    for module in modules():
        if module != "o1":
            layer_of(module)


def test_no_import_points_up_or_sideways():
    wrong = []
    for module, path in modules().items():
        if module == "o1":
            continue
        name, rank = layer_of(module)
        for target in sorted(imports_of(path, module)):
            target_name, target_rank = layer_of(target)
            if target_name != name and target_rank >= rank:
                wrong.append(f"{module} ({name}) imports {target} ({target_name})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_the_checker_sees_an_upward_import(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from o1.serve import pipeline\n")
    assert "o1.serve.pipeline" in imports_of(path, "o1.model")
    assert layer_of("o1.serve.pipeline")[1] > layer_of("o1.model")[1]
