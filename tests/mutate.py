"""Mutation testing: plant one-line bugs in snnlib, mapper and backend, one at a time, and count
how many the test suite catches.

    .venv/bin/python tests/mutate.py --mutants 60 --seed 1 --jobs 2

The mutants are drawn at random (seeded) from every place in the three packages where one of
these operators applies: a comparison changed at its boundary (``<`` -> ``<=``, ``==`` ->
``!=``, ...), arithmetic swapped (``+`` <-> ``-``, ``*`` -> ``+``, ``<<`` <-> ``>>``, ...),
an integer constant off by one, ``and`` <-> ``or``, a ``not`` removed, ``True`` <-> ``False``,
and a check dropped (the condition of an ``if`` whose body raises becomes ``False``). Error
messages, docstrings and argparse help are left alone.

Each mutant first runs at most four test files: those that call its function first, then those
that name its function, import its module, are named after it or name what it defines. Which test
file calls what is recorded once per package and test sources by running every test file under
tests/callmap.py (a trace of calls only, cached in .mutate-cache/; line coverage was ~5x slower
on 2 cores). A mutant is killed when one of its tests fails twice (the second time alone) or
they time out (a test that passes alone is deselected and the rest run on). A mutant that
survives them runs again against every test file that calls it or scores at all (second stage);
the report lists the survivors. Each mutant runs in a copy of the working tree, so the checkout is never touched.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("snnlib", "mapper", "backend")
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
    """An equal share of ``count`` from each package, drawn with a seeded generator: distinct
    lines first, then one of the mutants of each drawn line."""
    rng = random.Random(seed)
    share = count // len(mutants_by_package)
    drawn = []
    for package in sorted(mutants_by_package):
        lines = {}
        for mutant in mutants_by_package[package]:
            lines.setdefault((mutant.path, mutant.line), []).append(mutant)
        drawn += [rng.choice(lines[key]) for key in rng.sample(sorted(lines), share)]
    return drawn


# Which tests to run for a mutant.
TESTS_PER_MUTANT = 4


def test_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text()
            for folder in ("tests", "hardware_tests") for p in sorted((ROOT / folder).glob("test_*.py"))}


def tests_for(mutant: Mutant, source: str, tests: dict[str, str], calls: dict[str, list[str]],
              limit: int | None = TESTS_PER_MUTANT) -> list[str]:
    """The test files most likely to exercise the mutant, at most ``limit``: those that call
    its function (``calls``, see ``call_map``) first, then those that name its function, import
    its module, are named after it or its package, or name what it defines."""
    module = mutant.path[:-3].replace("/", ".").removesuffix(".__init__")
    defined = {node.name for node in ast.parse(source).body
               if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")}
    function = mutant.function.split(".")[-1] if mutant.function else ""
    stem, package = Path(mutant.path).stem.strip("_"), mutant.path.split("/")[0]
    callers = callers_of(mutant, calls)

    def score(path: str, text: str) -> int:
        words = set(re.findall(r"\w+", text))
        return (8 * (path in callers)
                + 4 * (function in words and function not in ("__init__", "__call__"))
                + 3 * (module in text) + 2 * (stem[:6] in path) + (package in path)
                + len(defined & words))
    ranked = sorted(((score(path, text), path) for path, text in tests.items()),
                    key=lambda p: (-p[0], p[1]))
    return [path for points, path in ranked[:limit] if points > 0]


def callers_of(mutant: Mutant, calls: dict[str, list[str]]) -> set[str]:
    """The test files that call the mutant's function, or anything inside it (a class, or the
    module for a mutant at module level)."""
    scope = f"{mutant.path}:{mutant.function}"
    inside = scope + "." if mutant.function else scope
    return {test for key, files in calls.items() if key == scope or key.startswith(inside)
            for test in files}


def tests_env(tree: Path, **extra: str) -> dict[str, str]:
    """The environment the tests run in, in the copy ``tree`` (``extra`` added or replacing):
    the emulator on a pty as the device, numba's cache inside the copy, no bytecode written."""
    return {**os.environ, "PYTHONPATH": str(tree), "SPIKEFLASH_DEVICE": "emulate:pty",
            "PYTHONDONTWRITEBYTECODE": "1", "NUMBA_CACHE_DIR": str(tree / ".numba-cache"), **extra}


def call_map(trees: list[Path], tests: dict[str, str]) -> dict[str, list[str]]:
    """``{"PATH:QUALNAME": [TEST FILE, ...]}``: which test files call each package function,
    from one run of every test file under tests/callmap.py, split over ``trees`` (one process
    each); cached in .mutate-cache/ per package and test sources."""
    digest = hashlib.sha256(repr(sorted({**package_sources(), **tests}.items())).encode()).hexdigest()
    cached = ROOT / ".mutate-cache" / f"callmap-{digest[:16]}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    print(f"recording which test files call what (tests/callmap.py), {len(trees)} processes",
          flush=True)
    runs = []
    for i, tree in enumerate(trees):
        env = tests_env(tree, PYTHONPATH=f"{tree}{os.pathsep}{tree / 'tests'}",
                         SPIKEFLASH_CALLMAP=str(tree / "callmap.json"))
        runs.append(subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                      "-p", "callmap", *sorted(tests)[i::len(trees)]],
                                     cwd=tree, env=env, stdout=subprocess.DEVNULL))
    calls: dict[str, set[str]] = {}
    for run, tree in zip(runs, trees):
        run.wait()  # failing tests do not matter here: their calls are recorded
        for key, files in json.loads((tree / "callmap.json").read_text()).items():
            calls.setdefault(key, set()).update(files)
    result = {key: sorted(files) for key, files in sorted(calls.items())}
    cached.parent.mkdir(exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


def run_mutant(mutant: Mutant, tests: list[str], tree: Path) -> str:
    """``killed``, ``survived``, ``timeout`` or ``no tests``: the result of one mutant.

    A failing test is run once more on its own before the mutant counts as killed, so that a
    first run that only compiled numba code cold past a run timeout does not count; one that
    passes alone is deselected and the other tests run on (``-x`` stopped at it)."""
    if not tests:
        return "no tests"
    target = tree / mutant.path
    original, stat = target.read_text(), target.stat()
    target.write_text(mutant.apply(original))
    env = tests_env(tree)

    def pytest(*selection) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p",
                               "no:cacheprovider", *selection], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
    try:
        deselected: list[str] = []
        while True:
            first = pytest(*tests, *(f"--deselect={test}" for test in deselected))
            failed = re.findall(r"^FAILED (\S+)", first.stdout, re.MULTILINE)
            if first.returncode == 0:
                return "survived"
            if not failed:  # a collection or import error: the mutant broke the module
                return "killed"
            if pytest(failed[0]).returncode != 0:
                return "killed"
            deselected.append(failed[0])  # passed alone: not this mutant's doing; run the rest
    except subprocess.TimeoutExpired:
        return "timeout"
    finally:
        target.write_text(original)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # numba's cache stays valid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=int, default=90, help="how many (split over packages)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the draw")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--list", action="store_true", help="only list the drawn mutants")
    parser.add_argument("--only", nargs="+", metavar="PATH:LINE", help="run only these drawn mutants")
    parser.add_argument("--packages", nargs="+", choices=PACKAGES, default=PACKAGES,
                        help="draw from these packages only (the whole --mutants from them)")
    args = parser.parse_args(argv)

    sources = package_sources()
    by_package = {}
    for path, source in sources.items():
        if path.split("/")[0] in args.packages:
            by_package.setdefault(path.split("/")[0], []).extend(find_mutants(path, source))
    drawn = draw(by_package, args.mutants, args.seed)
    if args.only:
        drawn = [m for m in drawn if f"{m.path}:{m.line}" in args.only]
    print(f"{sum(map(len, by_package.values()))} possible mutants "
          f"({', '.join(f'{p} {len(m)}' for p, m in sorted(by_package.items()))}); "
          f"drawn {len(drawn)} with seed {args.seed}", flush=True)
    if args.list:
        print("\n".join(map(str, drawn)))
        return 0

    tests = test_sources()
    results = {}

    def worker(queue: list[Mutant], tree: Path):
        while True:
            try:
                mutant = queue.pop(0)
            except IndexError:
                return
            chosen = tests_for(mutant, sources[mutant.path], tests, calls)
            result = run_mutant(mutant, chosen, tree)
            if result == "survived":  # second stage: every related test file
                chosen = tests_for(mutant, sources[mutant.path], tests, calls, limit=None)
                result = run_mutant(mutant, chosen, tree)
            results[mutant] = result
            print(f"[{len(results)}/{len(drawn)}] {results[mutant]:8} {mutant}  "
                  f"({' '.join(chosen)})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        trees = [Path(tmp) / f"tree{i}" for i in range(args.jobs)]
        for tree in trees:
            copy_tree(tree)
        calls = call_map(trees, tests)
        queue = list(drawn)
        threads = [threading.Thread(target=worker, args=(queue, tree)) for tree in trees]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    results = {m: results[m] for m in drawn}
    print(report(results))
    return 0


def copy_tree(tree: Path) -> None:
    """The working tree's tracked and unignored files, copied to ``tree``."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)


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
