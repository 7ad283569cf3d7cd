"""The mutant finder of tests/mutate.py: which edits it plans, and that each edit changes exactly
the one token it names."""

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from mutate import find_mutants  # noqa: E402

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
