"""The mapper's exception types."""

from __future__ import annotations


class ChipSpecError(ValueError):
    """A chip name is unknown, or a user-defined chip spec file is malformed."""


class ConfigError(ValueError):
    """A :class:`~mapper.config.ChipConfig` (e.g. a hand-edited JSON file) is invalid.

    ``path`` names the offending field, e.g. ``"cores.3.threshold_low"``.
    """

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


class MappingError(ValueError):
    """A model cannot be mapped. ``report`` (a :class:`~mapper.report.FitReport`) lists ALL
    problems found, each with the layer name, the rule, the value and a concrete fix."""

    def __init__(self, report):
        self.report = report
        problems = report.violations
        super().__init__(
            f"the model does not map onto {report.chip}: {len(problems)} problem(s)\n{report}"
        )
