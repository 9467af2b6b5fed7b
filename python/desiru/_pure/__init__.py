"""Pure-Python implementations of the byte engines (the reference and the fallback)."""
