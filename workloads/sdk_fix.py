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

And every registration records where in the program the resource was made: the SDK's `_get_stack_trace`
(pulumi/runtime/resource.py) runs `traceback.extract_stack()`, which reads the source line of every frame through
linecache, then turns each frame's file name into a URI with pathlib. Only the file names and line numbers reach
the engine, so the same StackTrace is built here from the frames themselves, with one URI per file name: about a
bare resource's whole registration time less for each run made deep inside the program (tests/test_scale.py checks
the result equals the SDK's own).

And the SDK gives a resource an Output attribute for every input property (`rpc.transfer_properties`: four futures and
a task each, resolved when the registration returns), though a program reads back only a few: a class that names the
ones it reads (`simfleet_outputs`) gets only those. What the engine receives is serialized from the inputs themselves,
unchanged; the state keeps every property.

And before recording that a resource depends on another, the SDK checks that this closes no cycle by walking every
resource the other one reaches (`resource_cycle_breaker.declare_dependency`), through a generator per resource nested
as deep as the path: for a run, whose glue ConfigMap waits for the platform, several hundred resources each time. The
same walk with a list and a set gives the same answer in a fraction of the time (tests/test_sdk_fix.py compares both).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

_fix_lock = threading.Lock()
_serialized: dict[type, str] = {}
_uris: dict[str, Any] = {}  # file name -> its SourcePosition URI (None where the SDK gives no position)
sdk_stack_trace: Any = None  # the SDK's own _get_stack_trace, kept when this one replaces it (for the tests)
sdk_transfer_properties: Any = None  # the SDK's own rpc.transfer_properties, which transfer_properties calls
_DEPENDENCIES = "_direct_computed_dependencies"  # where the SDK's cycle breaker keeps a resource's direct dependencies


def stack_trace() -> Any:
    """pulumi.runtime.resource._get_stack_trace's StackTrace: the frames older than the third `__init__` from the top
    (the concrete resource's constructor), newest first; empty when there is none older."""
    from pulumi.runtime.proto import source_pb2

    frames: list[Any] = []
    frame: Any = sys._getframe()  # the SDK's list ends with _get_stack_trace's own frame: this one stands for it
    inits = 0
    while frame is not None:
        if inits == 3:
            frames.append(frame)
        elif frame.f_code.co_name == "__init__":
            inits += 1
        frame = frame.f_back
    if inits < 3 or not frames:
        return source_pb2.StackTrace()
    return source_pb2.StackTrace(frames=[source_pb2.StackFrame(pc=_position(f.f_code.co_filename, f.f_lineno)) for f in frames])


def _position(filename: str, line: int | None) -> Any:
    from pulumi.runtime.proto import source_pb2

    if filename == "" or line is None:
        return None
    if filename not in _uris:
        import pathlib

        try:
            _uris[filename] = pathlib.Path(filename).as_uri()
        except ValueError:  # as the SDK: a name that is no absolute path (<frozen runpy>) has no position
            _uris[filename] = None
    uri = _uris[filename]
    return None if uri is None else source_pb2.SourcePosition(uri=uri, line=line)


def transfer_properties(res: Any, props: Any, custom: bool) -> Any:
    """The SDK's transfer_properties, over only the properties `res`'s class reads back where it names them."""
    outputs = getattr(type(res), "simfleet_outputs", None)
    if outputs is not None:
        props = {key: props[key] for key in props if key in outputs}
    return sdk_transfer_properties(res, props, custom)


def declare_dependency(from_resource: Any, to_resource: Any) -> bool:
    """resource_cycle_breaker.declare_dependency: record that `from_resource` depends on `to_resource`, unless
    `from_resource` is reachable from `to_resource` (then False: the dependency would close a cycle)."""
    seen = {to_resource}
    pending = [to_resource]
    while pending:
        resource = pending.pop()
        if resource == from_resource:
            return False
        for dependency in vars(resource).get(_DEPENDENCIES, ()):  # a Resource keeps its attributes in its __dict__
            if dependency not in seen:
                seen.add(dependency)
                pending.append(dependency)
    setattr(from_resource, _DEPENDENCIES, getattr(from_resource, _DEPENDENCIES, set()) | {to_resource})
    return True


def install_sdk_fix() -> None:
    """Idempotently replace pulumi.dynamic.dynamic.serialize_provider with a non-leaking wrapper, and the SDK's stack trace
    and property transfer with the ones above."""
    import pickle

    from pulumi.dynamic import dynamic as sdk
    from pulumi.runtime import resource as sdk_resource
    from pulumi.runtime import rpc

    global sdk_stack_trace, sdk_transfer_properties
    with _fix_lock:
        if sdk_resource._get_stack_trace is not stack_trace:
            sdk_stack_trace = sdk_resource._get_stack_trace
            sdk_resource._get_stack_trace = stack_trace
        if rpc.transfer_properties is not transfer_properties:  # pulumi/runtime/resource.py calls it as rpc.<name>
            sdk_transfer_properties = rpc.transfer_properties
            rpc.transfer_properties = transfer_properties
        rpc.declare_dependency = declare_dependency  # rpc imported it by name: its _add_dependency calls this global
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
