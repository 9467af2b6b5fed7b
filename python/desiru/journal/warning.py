"""The warning the journal gives when it recovered from something (a torn tail, a damaged snapshot)."""


class JournalWarning(UserWarning):
    """Something was wrong but recovered: e.g. a torn tail cut off when the journal opened."""


__all__ = ["JournalWarning"]
