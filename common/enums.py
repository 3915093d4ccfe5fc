"""Protobuf enums as plain namespaces.

`S.TASK_RUNNING` on a generated EnumTypeWrapper goes through a Python-level
`__getattr__`; re-registering ten thousand agents made 110,000 such lookups, a
tenth of the master's time in it. A namespace's attribute is a dict lookup.
`Name(value)` and `Value(name)` work as on the wrapper.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def plain(wrapper: Any) -> Any:
    """The enum's values as attributes of a namespace (typed Any: the names are
    the proto's, checked by the tests that use them)."""
    ns = SimpleNamespace(**dict(wrapper.items()))
    ns.Name = wrapper.Name
    ns.Value = wrapper.Value
    ns.values = wrapper.values
    ns.items = wrapper.items
    ns.DESCRIPTOR = wrapper.DESCRIPTOR
    return ns
