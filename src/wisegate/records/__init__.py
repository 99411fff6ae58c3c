"""The domain's records: plain frozen dataclasses the domain defines and storage returns.

They sit below ``storage`` (which fills them from rows) and ``domain`` (which owns their meaning), so
``api``, ``console`` and ``workers`` can name them without importing ``storage``.
"""
