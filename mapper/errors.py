"""The mapper's exception types; all derive from :class:`snnlib.errors.SpikeflashError`."""

from __future__ import annotations

from snnlib.errors import SpikeflashError


class ChipSpecError(SpikeflashError, ValueError):
    """A chip name is unknown, or a user-defined chip spec file is malformed.

    Example scenarios:
      - ``map_model(model, shape, chip="speck3")`` when no such chip is defined
      - a chip spec JSON whose ``cores`` is empty or whose memory sizes are negative
    """


class ConfigError(SpikeflashError, ValueError):
    """A :class:`~mapper.config.ChipConfig` (e.g. a hand-edited JSON file) is invalid.

    ``path`` names the offending field, e.g. ``"cores.3.threshold_low"``.

    Example scenarios:
      - a config file that is not JSON, has an unknown field or a newer format version
      - a core that needs more kernel memory than the chip's core has
    """

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path


class MappingError(SpikeflashError, ValueError):
    """A model cannot be mapped. ``report`` (a :class:`~mapper.report.FitReport`) lists ALL
    problems found, each with the layer name, the rule, the value and a concrete fix.

    Example scenarios:
      - a layer with more output channels than a core holds neurons for
      - a stride or kernel size the chip does not support (the fix names the nearest legal one)
    """

    def __init__(self, report):
        self.report = report
        problems = report.violations
        super().__init__(
            f"the model does not map onto {report.chip}: {len(problems)} problem(s)\n{report}"
        )
