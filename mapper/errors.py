"""The mapper's exception types; all derive from :class:`snnlib.errors.SpikeflashError`."""

from __future__ import annotations

from typing import Sequence

from snnlib.errors import SpikeflashError
from snnlib.network import InvalidNetworkError, Problem


class ChipSpecError(SpikeflashError, ValueError):
    """A chip name is unknown, or a user-defined chip spec file is malformed.

    Example scenarios:
      - ``map_model(model, shape, chip="speck3")`` when no such chip is defined
      - a chip spec JSON whose ``cores`` is empty or whose memory sizes are negative
    """


class ConfigError(InvalidNetworkError):
    """A :class:`~mapper.config.ChipConfig` (e.g. a hand-edited JSON file) is invalid; raised
    the same way by loading and by every device's ``flash``.

    ``problems`` lists every :class:`snnlib.network.Problem` found and ``path`` names the
    first offending field, e.g. ``"cores[3].threshold_low"``. It is an
    :class:`snnlib.InvalidNetworkError` (and a ``ValueError``).

    Example scenarios:
      - a config file that is not JSON, has an unknown field or a newer format version
      - a core that needs more kernel memory than the chip's core has
      - a DVS ``cut`` beyond the sensor, flashed to any device
    """

    def __init__(self, path: str | Sequence[Problem], message: str = ""):
        super().__init__([Problem(path, message)] if isinstance(path, str) else path)


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


class ProgramError(SpikeflashError, ValueError):
    """A TorchScript or ``torch.export`` program cannot be saved or rebuilt as a model
    (:mod:`mapper.torch_programs`).

    Example scenarios:
      - a program that calls an operator other than the chain's (e.g. ``aten::relu``)
      - a file that is not a readable program
    """
