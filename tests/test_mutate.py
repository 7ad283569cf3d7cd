"""The mutant finder of tests/mutate.py: which edits it plans, and that each edit changes exactly
the one token it names; and the call map that relates test files to the functions they call."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mutate import Mutant, callers_of, find_mutants  # noqa: E402

SOURCE = '''"""Module docstring with 1 < 2."""

def clamp(x, low):
    """Docstring: x + 1."""
    if x < low:
        raise ValueError(f"x {x} below {low + 1}")
    return x - 1 if not low else x << 2
'''


def test_finds_each_operator_once_and_skips_messages_and_docstrings():
    planned = {(m.line, m.original, m.replacement) for m in find_mutants("m.py", SOURCE)}
    assert planned == {
        (5, "x < low", "False"),  # the check dropped
        (5, "<", "<="),
        (7, "-", "+"), (7, "1", "2"), (7, "not ", ""), (7, "<<", ">>"), (7, "2", "3"),
    }


def test_every_mutant_changes_only_its_token_and_still_parses():
    for mutant in find_mutants("m.py", SOURCE):
        mutated = mutant.apply(SOURCE)
        ast.parse(mutated)
        before, after = SOURCE.splitlines(), mutated.splitlines()
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert changed == [mutant.line - 1]
        line = after[mutant.line - 1]
        assert line[:mutant.col] == before[mutant.line - 1][:mutant.col]
        assert line[mutant.col:mutant.col + len(mutant.replacement)] == mutant.replacement


def test_the_three_packages_offer_mutants_of_every_kind():
    from mutate import package_sources

    kinds = {m.replacement for path, source in package_sources().items()
             for m in find_mutants(path, source)}
    assert {"<=", "!=", "+", "-", "or", "and", "", "False", "True", "is not"} <= kinds


PROBES = {
    "test_encodes.py": "from backend.protocol.codec import FrameDecoder, encode_frame\n\n"
                       "def test_round_trip():\n"
                       "    assert FrameDecoder().feed(encode_frame(1, 2, b'x'))[0].payload == b'x'\n",
    "test_idle.py": "def test_nothing_from_the_packages():\n    assert sum([1, 2]) == 3\n",
}


def test_the_call_map_names_the_test_files_that_call_each_function(tmp_path):
    for name, text in PROBES.items():
        (tmp_path / name).write_text(text)
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{root / 'tests'}",
               SPIKEFLASH_CALLMAP=str(tmp_path / "calls.json"))
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "callmap",
                    *PROBES], cwd=tmp_path, env=env, check=True, capture_output=True)
    calls = json.loads((tmp_path / "calls.json").read_text())

    assert calls["backend/protocol/codec.py:encode_frame"] == ["test_encodes.py"]
    assert calls["backend/protocol/codec.py:FrameDecoder.feed"] == ["test_encodes.py"]
    assert not any("test_idle.py" in files for files in calls.values())

    def mutant(function):
        return Mutant("backend/protocol/codec.py", 1, 0, 1, "x", "y", function)
    assert callers_of(mutant("FrameDecoder"), calls) == {"test_encodes.py"}  # its methods
    assert callers_of(mutant(""), calls) == {"test_encodes.py"}  # the module
    assert callers_of(mutant("FrameDecoder.feedback"), calls) == set()  # not FrameDecoder.feed
