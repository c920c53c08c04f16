"""Strict validation of custom resources against a CRD's openAPIV3Schema, as the API server's strict field validation
(`kubectl apply --validate=strict`, the default for server-side apply) would reject them.

A CRD schema is an OpenAPI v3 structural schema, not JSON Schema. Turned into one here:
- an object schema that lists `properties` without `additionalProperties` or `x-kubernetes-preserve-unknown-fields`
  prunes unknown fields; strict field validation makes them errors, so it gets `additionalProperties: false`;
- `nullable: true` allows null;
- `x-kubernetes-int-or-string` allows an integer or a string (the CRDs also spell it as anyOf);
- `x-kubernetes-list-type: map` keys and `set` items must be unique, as the API server checks.
What is not checked: the CEL rules (`x-kubernetes-validations`, which need a CEL evaluator; the ones that matter to
simfleet's objects are restated as plain assertions in the tests), `format`, defaults, and webhooks.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import validators

from config.sources import load_yaml_all

OBJECT_META_KEYS = {"name", "namespace", "labels", "annotations"}


def load_crds(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(group/version, kind) -> that version's CRD entry (served, storage, schema), for every CRD file in `folder`."""
    crds: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in load_yaml_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                crds[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = {**version, "scope": spec["scope"]}
    return crds


def strict(schema: Any) -> Any:
    """A copy of an openAPIV3Schema that rejects unknown fields and understands the Kubernetes extensions."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in (node.get(key) or {}).values():
                walk(child)
        for key in ("items", "additionalProperties", "not"):
            walk(node.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for child in node.get(key) or []:
                walk(child)

    walk(schema)
    return schema


def _list_type(validator: Any, list_type: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = [tuple(item.get(k) for k in keys) for item in instance if isinstance(item, dict)]
        if len(seen) != len(set(seen)):
            yield jsonschema.ValidationError(f"duplicate entries for map keys {keys}: {seen}")
    elif list_type == "set":
        items = [repr(i) for i in instance]
        if len(items) != len(set(items)):
            yield jsonschema.ValidationError(f"duplicate entries in a set: {instance}")


StrictValidator = validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-list-type": _list_type})


def problems(obj: Mapping[str, Any], crds: Mapping[tuple[str, str], Mapping[str, Any]]) -> list[str]:
    """Why the API server would refuse `obj` (empty when it accepts it): an unserved version, an unknown field, a wrong
    type, a value outside an enum or a pattern, or metadata that is not a name, namespace, labels and annotations."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    crd = crds.get(key)
    if crd is None:
        return [f"no CRD serves {key[0]} {key[1]}"]
    found = [] if crd["served"] else [f"{key[0]} is not served"]
    metadata = obj.get("metadata") or {}
    unknown_meta = sorted(set(metadata) - OBJECT_META_KEYS)
    if unknown_meta:
        found.append(f"metadata: unexpected keys {unknown_meta}")
    if not metadata.get("name"):
        found.append("metadata.name is missing")
    if (crd["scope"] == "Namespaced") != ("namespace" in metadata):
        found.append(
            f"metadata.namespace {'is required' if crd['scope'] == 'Namespaced' else 'is set'} for a {crd['scope']} kind"
        )
    validator = StrictValidator(strict(crd["schema"]["openAPIV3Schema"]))
    found += [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(dict(obj))]
    return found
