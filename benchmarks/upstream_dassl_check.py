"""What Dassl plugins can import from ``dassl/``, and whether our RAdam computes upstream's.

1. Audit: every public module-level name of every module of an upstream Dassl.pytorch checkout
   (read with ``ast``, never imported), checked against ours: missing modules and names.
2. RAdam: upstream's ``dassl/optim/radam.py`` (loaded from the checkout) and ours update the same
   parameters from the same gradients for 30 steps, with weight decay, in both of upstream's
   modes (``degenerated_to_sgd`` on and off); prints the largest difference.

Usage: python benchmarks/upstream_dassl_check.py UPSTREAM_DASSL_CHECKOUT
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dassl.optim.radam import RAdam  # noqa: E402


def public_names(source: str) -> set[str]:
    """Names a module binds at its top level (definitions, assignments, names imported from
    modules), not _private; plain ``import x`` binds a module, which no plugin imports from it."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
    return {name for name in names if not name.startswith("_")}


def audit(upstream: Path) -> None:
    missing_modules = []
    for path in sorted((upstream / "dassl").rglob("*.py")):
        module = ".".join(path.relative_to(upstream).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        try:
            ours = importlib.import_module(module)
        except ModuleNotFoundError:
            missing_modules.append(module)
            continue
        missing = sorted(n for n in public_names(path.read_text()) if not hasattr(ours, n))
        if missing:
            print(f"  {module}: {', '.join(missing)}")
    absent = set(missing_modules)
    roots = sorted(m for m in absent if m.rsplit(".", 1)[0] not in absent)
    print(f"  {len(absent)} modules absent here, under: {', '.join(roots)}")


def load_upstream_radam(upstream: Path) -> type:
    path = upstream / "dassl" / "optim" / "radam.py"
    spec = importlib.util.spec_from_file_location("upstream_radam", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RAdam


def radam_difference(upstream_cls: type, degenerated_to_sgd: bool, steps: int = 30) -> float:
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(64, 32, generator=generator)
    grads = [torch.randn(64, 32, generator=generator) for _ in range(steps)]
    finals = []
    for cls in (upstream_cls, RAdam):
        param = torch.nn.Parameter(start.clone())
        optim = cls([param], lr=1e-2, weight_decay=1e-3, degenerated_to_sgd=degenerated_to_sgd)
        for grad in grads:
            param.grad = grad.clone()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # upstream's deprecated add_/addcmul_ overloads
                optim.step()
        finals.append(param.detach().clone())
    assert not torch.equal(finals[1], start), "the parameters did not move"
    return (finals[0] - finals[1]).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="a Dassl.pytorch checkout")
    args = parser.parse_args()
    print("Upstream public names missing from dassl/:")
    audit(args.upstream)
    upstream_radam = load_upstream_radam(args.upstream)
    for degenerated in (True, False):
        diff = radam_difference(upstream_radam, degenerated)
        print(f"RAdam degenerated_to_sgd={degenerated}: max |upstream - ours| = {diff:.3e}")


if __name__ == "__main__":
    main()
