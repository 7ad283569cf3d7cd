"""mapper: from a torch model to a validated, quantized chip configuration, with a fit report.

Chip specs are data (:func:`list_chips`, :func:`get_chip`); :class:`ChipConfig` is the plain,
versioned JSON configuration the backend flashes. Imports snnlib, never backend.
"""

from mapper.chips import ChipSpec, CoreSpec, Limits, get_chip, list_chips, load_chip_spec
from mapper.config import CONFIG_VERSION, ChipConfig, CoreConfig, DVSConfig
from mapper.errors import ChipSpecError, ConfigError, MappingError, ProgramError
from mapper.memory import MemoryNeed, kernel_words, neuron_words

__all__ = [
    "CONFIG_VERSION", "ChipConfig", "ChipSpec", "ChipSpecError", "ConfigError", "CoreConfig",
    "CoreSpec", "DVSConfig", "Limits", "MappingError", "MemoryNeed", "ProgramError", "get_chip",
    "kernel_words", "list_chips", "load_chip_spec", "neuron_words",
]
from mapper.graph import extract_graph
from mapper.pipeline import MappingResult, map_model
from mapper.report import FitReport

__all__ += ["FitReport", "MappingResult", "extract_graph", "map_model"]
from mapper.nir_interchange import (
    LegalizationReport,
    LegalizationWarning,
    LossyImportError,
    NIRExportError,
    NIRImportError,
    declared_input_shape,
    export_nir,
    import_nir,
)

__all__ += ["LegalizationReport", "LegalizationWarning", "LossyImportError", "NIRExportError",
            "NIRImportError", "declared_input_shape", "export_nir", "import_nir"]
from mapper.torch_programs import load_program, save_program

__all__ += ["load_program", "save_program"]
from mapper.chip_aware import chip_aware

__all__ += ["chip_aware"]
from mapper.chip_in_the_loop import chip_in_the_loop

__all__ += ["chip_in_the_loop"]
