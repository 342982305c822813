"""The errors benloss raises on bad input or state: the command line prints their message alone.

Anything else (a CUDA failure, a bug) is unexpected and keeps its whole traceback.
"""

from __future__ import annotations


class BenlossError(Exception):
    """Base of benloss's own errors; the message names the file or setting and the problem."""


class InputError(BenlossError, ValueError):
    """A file, argument or setting that is not what the step needs (a corrupt archive, an unknown label, ...)."""
