"""Docs that cannot drift: every dotted name of our packages that a docstring names in backticks
exists, every ``--option`` a CLI help text mentions is defined, and every document the code
cites is in the repository."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import subprocess
from pathlib import Path

from backend.app.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("snnlib", "mapper", "backend")
#: a dotted name of our packages in backticks or a Sphinx role: `snnlib.x`, ``mapper.y.z``, :func:`~backend.w`
NAME = re.compile(r"`+~?((?:snnlib|mapper|backend)(?:\.\w+)+)(?:\(\))?`+")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def modules():
    for package in PACKAGES:
        top = importlib.import_module(package)
        yield top
        for info in pkgutil.walk_packages(top.__path__, prefix=f"{package}."):
            yield importlib.import_module(info.name)


def docstrings(module):
    """(where, docstring) of the module and of every class, function and method it defines."""
    yield module.__name__, module.__doc__ or ""
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"{module.__name__}.{name}", obj.__doc__ or ""
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                member = getattr(member, "__func__", getattr(member, "fget", member))
                if inspect.isfunction(member):
                    yield f"{module.__name__}.{name}.{attr}", member.__doc__ or ""


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def test_every_dotted_name_a_docstring_cites_exists():
    missing = sorted({f"{where}: {name}" for module in modules() for where, doc in docstrings(module)
                      for name in NAME.findall(doc) if not resolves(name)})
    assert missing == [], "docstrings name symbols that do not exist:\n" + "\n".join(missing)


def parsers(parser: argparse.ArgumentParser, path: str = "spikeflash"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def test_every_option_a_cli_help_mentions_is_defined():
    root = build_parser()
    known = {opt for _, p in parsers(root) for a in p._actions for opt in a.option_strings}
    assert {"--device", "--timeout"} <= known and OPTION.findall("see --dt-us, not -x") == ["--dt-us"]
    texts = [(path, p.description or "") for path, p in parsers(root)]
    texts += [(f"{path} {'/'.join(a.option_strings) or a.dest}", a.help or "")
              for path, p in parsers(root) for a in p._actions]
    unknown = sorted({f"{where}: {opt}" for where, text in texts for opt in OPTION.findall(text)
                      if opt not in known})
    assert unknown == [], "help texts mention options argparse does not define:\n" + "\n".join(unknown)


def test_cited_documents_are_in_the_repository():
    files = subprocess.run(["git", "ls-files", "*.py", "*.md", "Makefile"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    cited = {(f, doc) for f in files if (ROOT / f).exists()
             for doc in re.findall(r"\b(docs/[\w.-]+\.md)", (ROOT / f).read_text())}
    missing = sorted(f"{f}: {doc}" for f, doc in cited if not (ROOT / doc).exists())
    stale = sorted(f for f in files if (ROOT / f).exists() and "chip-facts" in (ROOT / f).read_text()
                   and f != "tests/test_drift.py")
    assert missing == [] and stale == [], (missing, "cite docs/chip-model.md, not chip-facts:", stale)
