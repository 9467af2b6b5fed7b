"""The optional ``report`` extra: import its libraries, or say which extra to install."""

from __future__ import annotations

import importlib
from typing import Any

from desiru.errors import DesiruError

#: what to type when the extra is missing
INSTALL = 'pip install "desiru[report]"'


def require(module: str) -> Any:
    """Import ``module`` (plotly or plotext) or raise a DesiruError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise DesiruError(f"run reports need {top}, which is not installed",
                          hint=f"install the report extra: {INSTALL}") from None


__all__ = ["INSTALL", "require"]
