"""The conda environments: they parse, pin conda-forge packages, and declare what their rules import."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from .support import ROOT

#: Import names whose conda package is named otherwise.
CONDA_NAMES = {"torch": "pytorch", "yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow",
               "matplotlib": "matplotlib-base"}  # fmt: skip
PACKAGE = ROOT / "src" / "benloss"


def env_packages(path: Path) -> set[str]:
    document = yaml.safe_load(path.read_text())
    names = set()
    for item in document["dependencies"]:
        if isinstance(item, dict):
            names |= {re.split(r"[=<>]", p)[0].strip() for p in item["pip"]}
        else:
            names.add(re.split(r"[ =<>]", item)[0])
    return names


def imports_of(module: str, seen: set[str] | None = None) -> set[str]:
    """Third-party top-level imports of a benloss module (dotted, below benloss) and every one it imports."""
    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = PACKAGE.joinpath(*module.split("."))
    tree = ast.parse((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text())
    # Imports for type annotations only (``if TYPE_CHECKING:``) never run.
    tree.body = [
        node for node in tree.body if not (isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    ]
    found: set[str] = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top, _, rest = name.partition(".")
            if top == "benloss" and rest:
                found |= imports_of(rest, seen)
            elif top not in sys.stdlib_module_names and top != "benloss":
                found.add(top)
    return found


def step_modules() -> dict[str, set[str]]:
    """For each CLI step, the benloss modules its command imports."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    steps = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_"):
            steps[node.name[4:]] = {
                n.module.partition(".")[2] for n in ast.walk(node) if isinstance(n, ast.ImportFrom) and n.module
            }
    return steps


def rules_with_steps() -> list[tuple[str, str, Path]]:
    """(rule, CLI step, conda env file) for every rule that runs ``benloss <step>``."""
    found = []
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\nrule ", "\n" + smk.read_text())[1:]:
            name = block.split(":")[0].strip()
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            step = re.search(r'"benloss (\w+)', block)
            if step:
                assert conda, f"rule {name} runs code but has no conda environment"
                found.append((name, step.group(1), (smk.parent / conda.group(1)).resolve()))
    return found


def test_every_env_parses_and_pins_conda_forge():
    for path in (ROOT / "envs").glob("*.yaml"):
        document = yaml.safe_load(path.read_text())
        assert document["channels"][0] == "conda-forge", path
        for item in document["dependencies"]:
            if isinstance(item, str):
                assert "=" in item, f"{path.name}: {item} is not pinned"


RULES = rules_with_steps()


@pytest.mark.parametrize(("rule", "step", "env"), RULES, ids=[r for r, _, _ in RULES])
def test_env_declares_what_the_rule_imports(rule, step, env):
    assert env.exists(), env
    modules = step_modules()[step]
    needed = set().union(*(imports_of(m) for m in modules))
    declared = env_packages(env)
    missing = sorted(CONDA_NAMES.get(name, name) for name in needed if CONDA_NAMES.get(name, name) not in declared)
    assert not missing, f"rule {rule} ({env.name}) imports {missing} but its environment lacks them"


#: Packages an environment may hold that no rule imports by name: the interpreter, pip for zennit, torchvision
#: (zennit imports it; conda must match it to pytorch), ISA-L's gzip (imported by name at run time, when installed).
ALLOWED_EXTRAS = {"python", "pip", "torchvision", "python-isal"}


@pytest.mark.parametrize("env", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda path: path.name)
def test_env_carries_only_what_its_rules_import(env):
    needed = set()
    for _, step, path in RULES:
        if path == env.resolve():
            needed |= {CONDA_NAMES.get(name, name) for module in step_modules()[step] for name in imports_of(module)}
    extra = sorted(env_packages(env) - needed - ALLOWED_EXTRAS)
    assert not extra, f"{env.name} carries {extra}, which none of its rules imports"


def test_all_rules_are_covered():
    assert {rule for rule, _, _ in RULES} >= {"synth", "download", "prepare", "train", "evaluate", "bootstrap",
                                             "tables", "figures", "explain", "report"}  # fmt: skip
