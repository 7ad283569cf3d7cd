"""The ``on_run`` fixture, and Hypothesis profiles: derandomized in CI (``CI=true``, which CI sets), so that a CI run never
fails on a seed that the previous run did not try; locally random with the example database in
``.hypothesis/``, so that a failure found once is replayed first on the next run."""

import os
import signal

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("local", database=DirectoryBasedExampleDatabase(".hypothesis/examples"))
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")


@pytest.fixture
def on_run(monkeypatch):
    """``on_run(hook)``: the ``CountingChip`` of tests/test_session.py calls ``hook()`` at the
    start of every run, for this test only (undone when it ends, whatever happens)."""
    from test_session import CountingChip

    return lambda hook: monkeypatch.setattr(CountingChip, "on_run", staticmethod(hook))

# Ctrl-C tests need SIGINT to raise KeyboardInterrupt here and in the CLI processes they start;
# a shell starts background jobs with SIGINT ignored, which a child would inherit.
signal.signal(signal.SIGINT, signal.default_int_handler)
