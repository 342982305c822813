"""Where the shipped static tables live."""

from __future__ import annotations

import os
from pathlib import Path

#: The repository's ``resources/`` folder; override with ``BENLOSS_RESOURCES``.
RESOURCES = Path(os.environ.get("BENLOSS_RESOURCES", Path(__file__).resolve().parents[3] / "resources"))


def resource(*parts: str) -> Path:
    """Path of a shipped resource file, with a clear error when it is missing."""
    path = RESOURCES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"shipped resource {path} is missing; is the package installed from a full checkout?")
    return path
