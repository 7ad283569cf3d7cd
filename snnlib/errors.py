"""The root of every exception spikeflash raises.

Every error class of snnlib, mapper and backend derives from :class:`SpikeflashError`, so
``except SpikeflashError`` catches anything spikeflash reports on purpose (the ``spikeflash``
command line does exactly that), while a bug elsewhere still surfaces as its own exception.
The root lives here, in the lowest package, so that every package can inherit it without
importing upwards.

Classes also mix in the builtin that fits their meaning (``ValueError`` for a bad argument or
file, ``TimeoutError`` for a device that does not answer, ``ImportError`` for a missing optional
package), so code written against the builtins keeps working.

>>> from snnlib import InvalidNetworkError, SpikeflashError
>>> issubclass(InvalidNetworkError, SpikeflashError), issubclass(InvalidNetworkError, ValueError)
(True, True)
"""

from __future__ import annotations

from typing import Optional


class SpikeflashError(Exception):
    """Base class of every exception spikeflash raises on purpose.

    ``message`` says what is wrong, where, and with which value; ``hint``, when given, says
    what to try next and is appended to the text as ``(hint: ...)``.

    Example scenarios:
      - any of its subclasses; catch this class to handle every spikeflash error in one
        place, as the ``spikeflash`` command line does

    >>> str(SpikeflashError("port busy", hint="close the other program"))
    'port busy (hint: close the other program)'
    """

    def __init__(self, message: str = "", *, hint: Optional[str] = None):
        self.message, self.hint = message, hint
        super().__init__(message if hint is None else f"{message} (hint: {hint})")


class MissingDependency(SpikeflashError, ImportError):
    """An optional package needed for the requested feature is not installed; the message
    names the ``pip install`` command.

    Example scenarios:
      - :func:`mapper.import_nir` or :func:`mapper.export_nir` without the ``nir`` package
      - reading an AEDAT4 recording without the ``aedat`` decoder
    """
