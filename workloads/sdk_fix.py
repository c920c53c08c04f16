"""The Pulumi SDK scale bug in dynamic providers, fixed in this one place.

pulumi 3.272 `pulumi.dynamic.dynamic.serialize_provider` sorts dicts while pickling by assigning
`pickle._Pickler._batch_setitems` (and `save_dict`) to wrappers of whatever is there, and restores only
`pickle.Pickler`. Every dynamic resource therefore wraps the previous wrapper; at ~350 resources pickling a
dict recurses through all of them and raises RecursionError (tests/test_scale.py reproduces it). The fix
wraps the module global that `Resource.__init__` calls so both attributes are put back after every call:
each serialization then sorts exactly once, which yields the same bytes as the SDK's first call.

On top of that, a provider with no state is pickled by reference, so its serialization is the same string
for every resource; it is computed once per class and process (tests/test_pickle.py checks the bytes are
identical to the SDK's own).
"""

from __future__ import annotations

import threading
from typing import Any

_fix_lock = threading.Lock()
_serialized: dict[type, str] = {}


def install_sdk_fix() -> None:
    """Idempotently replace pulumi.dynamic.dynamic.serialize_provider with a non-leaking wrapper."""
    import pickle

    from pulumi.dynamic import dynamic as sdk

    with _fix_lock:
        if getattr(sdk.serialize_provider, "simfleet_restores_pickler", False):
            return
        leaky = sdk.serialize_provider

        def serialize_provider(provider: Any) -> str:
            saved = (pickle._Pickler._batch_setitems, pickle._Pickler.save_dict)  # type: ignore[attr-defined]
            try:
                kind = type(provider)
                if not vars(provider) and getattr(kind, "simfleet_stateless", False):
                    if kind not in _serialized:
                        _serialized[kind] = leaky(provider)
                    return _serialized[kind]
                return leaky(provider)
            finally:
                pickle._Pickler._batch_setitems, pickle._Pickler.save_dict = saved  # type: ignore[attr-defined]

        serialize_provider.simfleet_restores_pickler = True  # type: ignore[attr-defined]
        sdk.serialize_provider = serialize_provider
