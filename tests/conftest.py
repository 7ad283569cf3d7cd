"""Hypothesis profiles: derandomized in CI (``CI=true``, which CI sets), so that a CI run never
fails on a seed that the previous run did not try; locally random with the example database in
``.hypothesis/``, so that a failure found once is replayed first on the next run."""

import os

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("local", database=DirectoryBasedExampleDatabase(".hypothesis/examples"))
settings.load_profile("ci" if os.environ.get("CI") == "true" else "local")
