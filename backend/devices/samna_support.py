"""Finding out whether the real samna library is installed, without importing it.

PyPI's ``samna`` package is a stub whose ``__init__`` runs pip against SynSense's private
index at import time (it carries a ``PYPI_SAMNA`` marker). So nothing but an explicit request
for a ``samna://`` device may import samna; everything else (``list_devices()``, ``doctor``)
asks :func:`samna_status`, which only reads the installed files.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Optional

from backend.errors import SamnaUnavailable

#: where the PyPI stub says the real samna wheels live (read from the stub when present)
SYNSENSE_INDEX = "https://gitlab.com/api/v4/projects/27423070/packages/pypi/simple"


@dataclass(frozen=True)
class SamnaStatus:
    """``state``: "real", "pypi-stub" or "missing"; ``version`` as installed (or None);
    ``origin``: path of samna's ``__init__``; ``hint``: how to get the real library."""

    state: str
    version: Optional[str]
    origin: Optional[str]
    hint: str

    @property
    def usable(self) -> bool:
        return self.state == "real"


def samna_status() -> SamnaStatus:
    """Inspect the installed samna without importing it."""
    module = sys.modules.get("samna")
    if module is not None:  # already imported (by the user, or a test stand-in)
        return SamnaStatus("real", getattr(module, "__version__", None),
                           getattr(module, "__file__", None), "")
    spec = importlib.util.find_spec("samna")
    if spec is None or spec.origin is None:
        return SamnaStatus("missing", None, None,
                           "install it with `pip install spikeflash[samna]` (samna >= 0.46); "
                           f"if pip then installs PyPI's stub, run {_reinstall_command(None, SYNSENSE_INDEX)}")
    version = _installed_version()
    with open(spec.origin, encoding="utf-8", errors="replace") as f:
        source = f.read()
    if "PYPI_SAMNA" in source:
        found = re.search(r"https://[^\s\"']+/simple", source)
        index = found.group(0) if found else SYNSENSE_INDEX
        return SamnaStatus("pypi-stub", version, spec.origin,
                           f"PyPI's samna {version} is a stub that downloads the real library when "
                           f"imported; install the real one with {_reinstall_command(version, index)}")
    return SamnaStatus("real", version, spec.origin, "")


def import_samna() -> ModuleType:
    """Import the real samna, or raise :class:`SamnaUnavailable` saying how to install it."""
    status = samna_status()
    if not status.usable:
        raise SamnaUnavailable(f"samna is {status.state.replace('-', ' ')}", hint=status.hint)
    return importlib.import_module("samna")


def _installed_version() -> Optional[str]:
    try:
        return importlib.metadata.version("samna")
    except importlib.metadata.PackageNotFoundError:
        return None


def _reinstall_command(version: Optional[str], index: str) -> str:
    pinned = f"samna=={version}" if version else "samna"
    return f"`pip install --force-reinstall {pinned} --index-url {index}`"
