"""Bridges between desiru and other LM-program libraries.

``desiru.interop.dspy`` converts live DSPy modules and DSPy's own JSON state files
to and from desiru programs. Importing this package never imports DSPy; the
adapter imports it only when it is given a DSPy object or asked to build one.
"""

from __future__ import annotations

__all__ = ["dspy"]
