"""Mutation testing: plant one-line bugs in snnlib, mapper and backend, one at a time, and count
how many the test suite catches.

    .venv/bin/python tests/mutate.py --mutants 90 --seed 1

The mutants are drawn at random (seeded) from every place in the three packages where one of
these operators applies: a comparison changed at its boundary (``<`` -> ``<=``, ``==`` ->
``!=``, ...), arithmetic swapped (``+`` <-> ``-``, ``*`` -> ``+``, ``<<`` <-> ``>>``, ...),
an integer constant off by one, ``and`` <-> ``or``, a ``not`` removed, ``True`` <-> ``False``,
and a check dropped (the condition of an ``if`` whose body raises becomes ``False``). Error
messages, docstrings and argparse help are left alone.

Each mutant runs only the tests that execute its line, found once by running the whole suite
under coverage with one context per test (cached in ``.mutation/``; ``--remap`` redoes it).
Tests that fail without any mutant (flaky under load) are deselected for every mutant.
Lines run only in compiled numba code or in child processes have no context of their own:
their mutants run the tests that execute any line of the same function, else of the module.
A mutant is killed when those tests fail or time out; the report lists the survivors.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("snnlib", "mapper", "backend")
CACHE = ROOT / ".mutation"
TEST_TIMEOUT_S = 600  # a mutant whose tests run longer than this counts as killed (a hang)

_SWAPS = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">", ast.Eq: "!=", ast.NotEq: "==",
          ast.In: "not in", ast.NotIn: "in", ast.Is: "is not", ast.IsNot: "is",
          ast.Add: "-", ast.Sub: "+", ast.Mult: "+", ast.FloorDiv: "*", ast.Mod: "//",
          ast.LShift: ">>", ast.RShift: "<<", ast.BitAnd: "|", ast.BitOr: "&", ast.BitXor: "|",
          ast.And: "or", ast.Or: "and"}
_TOKENS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
           ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not",
           ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%",
           ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
           ast.And: "and", ast.Or: "or"}


@dataclass(frozen=True)
class Mutant:
    """One edit of one line: ``line[col:end_col]`` (0-based columns) becomes ``replacement``."""

    path: str  # relative to the repository root
    line: int  # 1-based
    col: int
    end_col: int
    original: str
    replacement: str
    function: str  # the enclosing function's qualified name, "" at module level

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        assert text[self.col:self.end_col] == self.original, (self, text)
        lines[self.line - 1] = text[:self.col] + self.replacement + text[self.end_col:]
        return "".join(lines)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: `{self.original}` -> `{self.replacement}`"


class _Finder(ast.NodeVisitor):
    """Collects the mutants of one module, skipping messages, docstrings and annotations."""

    def __init__(self, path: str, source: str):
        self.path, self.lines, self.found, self.scope = path, source.splitlines(), [], []

    def _add(self, line, col, end_col, replacement):
        original = self.lines[line - 1][col:end_col]
        self.found.append(Mutant(self.path, line, col, end_col, original, replacement,
                                 ".".join(self.scope)))

    def _operator(self, op, left: ast.AST, right: ast.AST):
        """The token of ``op`` between two operands on one line."""
        if type(op) not in _SWAPS or left.end_lineno != right.lineno:
            return
        text = self.lines[left.end_lineno - 1]
        gap = text[left.end_col_offset:right.col_offset]
        match = re.search(r"(?<![\w<>=!])" + re.escape(_TOKENS[type(op)]) + r"(?![\w<>=])", gap)
        if match:
            start = left.end_col_offset + match.start()
            self._add(left.end_lineno, start, start + len(match.group()), _SWAPS[type(op)])

    # Scopes and places left alone.
    def _scoped(self, node):
        self.scope.append(node.name)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for child in body:
            self.visit(child)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for default in node.args.defaults + node.args.kw_defaults:
                if default is not None:
                    self.visit(default)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Raise(self, node):  # messages
        pass

    def visit_JoinedStr(self, node):
        pass

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_Call(self, node):
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        if name in {"print", "warn", "add_argument", "write", "echo", "debug", "info"}:
            return
        self.generic_visit(node)

    def visit_If(self, node):
        if node.body and isinstance(node.body[0], ast.Raise) and node.test.lineno == node.test.end_lineno:
            self._add(node.test.lineno, node.test.col_offset, node.test.end_col_offset, "False")
        self.generic_visit(node)

    # Operators.
    def visit_Compare(self, node):
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:]):
            self._operator(op, left, right)
        self.generic_visit(node)

    def visit_BinOp(self, node):
        self._operator(node.op, node.left, node.right)
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        for left, right in zip(node.values, node.values[1:]):
            self._operator(node.op, left, right)
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not) and node.lineno == node.operand.lineno:
            self._add(node.lineno, node.col_offset, node.operand.col_offset, "")
        self.generic_visit(node)

    def visit_Constant(self, node):
        if node.lineno != node.end_lineno:
            return
        if isinstance(node.value, bool):
            self._add(node.lineno, node.col_offset, node.end_col_offset, str(not node.value))
        elif isinstance(node.value, int):
            self._add(node.lineno, node.col_offset, node.end_col_offset, str(node.value + 1))


def find_mutants(path: str, source: str) -> list[Mutant]:
    """Every mutant of one module, in source order."""
    finder = _Finder(path, source)
    tree = ast.parse(source)
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    for node in body:
        finder.visit(node)
    return finder.found


def package_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text()
            for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def draw(mutants_by_package: dict[str, list[Mutant]], count: int, seed: int) -> list[Mutant]:
    """An equal share of ``count`` from each package, drawn with a seeded generator."""
    rng = random.Random(seed)
    share = count // len(mutants_by_package)
    return [m for package in sorted(mutants_by_package)
            for m in rng.sample(mutants_by_package[package], share)]


# Which tests run which lines.
def coverage_map(remap: bool) -> dict[str, dict[str, list[str]]]:
    """``{path: {line: [test files]}}`` from one run of the suite under coverage, cached."""
    cached = CACHE / "coverage-map.json"
    if cached.exists() and not remap:
        return json.loads(cached.read_text())
    CACHE.mkdir(exist_ok=True)
    rc = CACHE / "coveragerc"
    rc.write_text("[run]\ndynamic_context = test_function\nsource = " + ",".join(PACKAGES) + "\n")
    data = CACHE / "coverage.sqlite"
    done = subprocess.run([sys.executable, "-m", "coverage", "run", f"--rcfile={rc}",
                           f"--data-file={data}", "-m", "pytest", "-q", "-rf", "-p",
                           "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), SPIKEFLASH_DEVICE="emulate:pty"))
    print(done.stdout[-2000:], flush=True)
    failing = re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)
    (CACHE / "baseline-failures.txt").write_text("".join(f"{t}\n" for t in failing))
    import coverage
    covered = coverage.CoverageData(basename=str(data))
    covered.read()
    result = {}
    for measured in covered.measured_files():
        path = str(Path(measured).relative_to(ROOT))
        lines = {}
        for line, contexts in covered.contexts_by_lineno(measured).items():
            files = sorted({_test_file(c) for c in contexts if c})
            if files:
                lines[str(line)] = files
        result[path] = lines
    cached.write_text(json.dumps(result))
    return result


def _test_file(context: str) -> str:
    """``tests.test_x.test_y`` or ``test_x.TestZ.test_y`` -> the test file's path."""
    for part in context.split("."):
        if part.startswith("test_"):
            for folder in ("tests", "hardware_tests"):
                if (ROOT / folder / f"{part}.py").exists():
                    return f"{folder}/{part}.py"
    return ""


def tests_for(mutant: Mutant, lines: dict[str, list[str]], source: str) -> list[str]:
    """The test files that run the mutant's line; else its function's lines; else its module's."""
    if str(mutant.line) in lines:
        return [f for f in lines[str(mutant.line)] if f]
    if mutant.function:
        spans = _function_spans(source, mutant.function)
        near = {f for line, files in lines.items() if any(a <= int(line) <= b for a, b in spans)
                for f in files}
        if near:
            return sorted(f for f in near if f)
    return sorted({f for files in lines.values() for f in files if f})


def _function_spans(source: str, qualified: str) -> list[tuple[int, int]]:
    spans = []

    def walk(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = scope + [child.name]
                if ".".join(name) == qualified:
                    spans.append((child.lineno, child.end_lineno))
                walk(child, name)
            else:
                walk(child, scope)
    walk(ast.parse(source), [])
    return spans


def run_mutant(mutant: Mutant, tests: list[str], tree: Path) -> str:
    """``killed``, ``survived``, ``timeout`` or ``no tests``: the result of one mutant.

    A failing test is run once more on its own before the mutant counts as killed, so that a
    first run that only compiled numba code cold past a run timeout does not count."""
    if not tests:
        return "no tests"
    target = tree / mutant.path
    original, stat = target.read_text(), target.stat()
    target.write_text(mutant.apply(original))
    known = CACHE / "baseline-failures.txt"  # tests that fail without a mutant prove nothing
    deselect = [f"--deselect={t}" for t in known.read_text().split()] if known.exists() else []
    env = dict(os.environ, PYTHONPATH=str(tree), SPIKEFLASH_DEVICE="emulate:pty",
               PYTHONDONTWRITEBYTECODE="1", NUMBA_CACHE_DIR=str(tree / ".numba-cache"))

    def pytest(*selection) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p",
                               "no:cacheprovider", *deselect, *selection], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
    try:
        first = pytest(*tests)
        failed = re.findall(r"^FAILED (\S+)", first.stdout, re.MULTILINE)
        if first.returncode == 0:
            return "survived"
        if not failed:  # a collection or import error: the mutant broke the module
            return "killed"
        return "killed" if pytest(failed[0]).returncode != 0 else "survived"
    except subprocess.TimeoutExpired:
        return "timeout"
    finally:
        target.write_text(original)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # numba's cache stays valid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=90, help="how many (split over packages)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the draw")
    parser.add_argument("--remap", action="store_true", help="rerun the coverage map")
    parser.add_argument("--list", action="store_true", help="only list the drawn mutants")
    args = parser.parse_args(argv)

    sources = package_sources()
    by_package = {}
    for path, source in sources.items():
        by_package.setdefault(path.split("/")[0], []).extend(find_mutants(path, source))
    drawn = draw(by_package, args.mutants, args.seed)
    print(f"{sum(map(len, by_package.values()))} possible mutants "
          f"({', '.join(f'{p} {len(m)}' for p, m in sorted(by_package.items()))}); "
          f"drawn {len(drawn)} with seed {args.seed}", flush=True)
    if args.list:
        print("\n".join(map(str, drawn)))
        return 0

    covered = coverage_map(args.remap)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        for name in files:
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
        for number, mutant in enumerate(drawn, 1):
            tests = tests_for(mutant, covered.get(mutant.path, {}), sources[mutant.path])
            results[mutant] = run_mutant(mutant, tests, tree)
            print(f"[{number}/{len(drawn)}] {results[mutant]:8} {mutant}  ({len(tests)} test files)",
                  flush=True)
    print(report(results))
    return 0


def report(results: dict[Mutant, str]) -> str:
    """The kill rate per package and the survivors, as Markdown."""
    rows = ["| package | mutants | killed | kill rate |", "|---|---|---|---|"]
    for package in (*PACKAGES, "all"):
        mine = [r for m, r in results.items() if package == "all" or m.path.startswith(package)]
        killed = sum(r in ("killed", "timeout") for r in mine)
        rows.append(f"| {package} | {len(mine)} | {killed} | {killed / max(len(mine), 1):.0%} |")
    survivors = [f"- {m} ({r})" for m, r in results.items() if r not in ("killed", "timeout")]
    return "\n".join(rows + ["", "Survivors:", *survivors])


if __name__ == "__main__":
    sys.exit(main())
