"""Import hygiene: each floor imports only what it uses, no floor imports upward, and no
package reaches into another's private names."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).parent.parent / "lightning_tx"
# From the bottom floor up (DESIGN.md): a package may import only from its floor and below.
FLOORS = {
    "functional": 0,
    "metrics": 1,
    "encoders": 2,
    "data": 2,
    "scoring": 3,
    "callbacks": 4,
    "finetune": 4,
    "ranking": 5,
    "loggers": 4,
    "pretraining": 5,
    "cli": 6,
    "demo": 7,
}
HEAVY = ["jsonargparse", "wandb", "lightning_tx.cli", "lightning_tx.finetune", "lightning_tx.loggers",
         "lightning_tx.data.datamodule", "lightning_tx.ranking", "lightning_tx.pretraining"]  # fmt: skip


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("lightning_tx.functional", [*HEAVY, "lightning", "torchmetrics", "lightning_tx.metrics"]),
        ("lightning_tx.metrics", [*HEAVY, "lightning", "lightning_tx.encoders", "lightning_tx.scoring"]),
        ("lightning_tx.callbacks", HEAVY),
    ],
)
def test_importing_a_floor_loads_nothing_it_does_not_use(module, forbidden):
    code = f"import sys, {module}; print([m for m in {forbidden!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", f"importing {module} loads {loaded.strip()}"


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lightning_tx."):
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("lightning_tx."):
                    yield alias.name, []


def test_no_upward_or_private_imports_across_packages():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own not in FLOORS:
            continue
        for module, names in _imports(path):
            other = module.split(".")[1]
            if other == own:
                continue
            if FLOORS.get(other, 0) > FLOORS[own]:
                problems.append(f"{path.name}: {own} imports upward from {module}")
            private = [part for part in module.split(".")[1:] if part.startswith("_")]
            private += [name for name in names if name.startswith("_")]
            if private:
                problems.append(f"{path.name}: imports private {private} of {module}")
    assert not problems, "\n".join(problems)
