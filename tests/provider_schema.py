"""An offline check of Terraform files against the AWS provider's schema.

The schema comes from @cdktf/provider-aws's jsii assembly, which is generated from the
provider's own schema (scripts/provider_schema.py makes it small; `make deploy-tools`
fetches it). Reported: unknown resource types, unknown arguments, blocks written as
arguments and arguments written as blocks, missing required arguments and blocks, and
references to attributes a resource or data source does not have, and lifecycle
ignore_changes paths that lead nowhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# Terraform's own meta-arguments, valid in every resource and data block.
META_ARGUMENTS = {"count", "for_each", "provider", "depends_on", "lifecycle", "provisioner", "connection"}
REFERENCE = re.compile(r"(?<![\w.])(data\.)?(aws_[a-z0-9_]+)\.([a-z0-9_]+)(?:\[[^\]]*\])?\.([a-z0-9_]+)")


def load_schema(path: Path) -> dict:
    return json.loads(path.read_text())


def unlabel(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == '"' else key


def is_block(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and item.get("__is_block__") for item in value)
    )


def parse_blocks(directory: Path) -> list[tuple[str, str, str, str, dict]]:
    """(file, "resource"|"data", type, name, raw body) for every block in directory/*.tf."""
    import hcl2

    found = []
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    for name, body in named.items():
                        found.append((path.name, kind, unlabel(type_), unlabel(name), body))
    return found


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in strings_in(key) + strings_in(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def check_ignore_changes(schema: dict, lifecycle: list, struct: str, where: str) -> list[str]:
    """Each lifecycle.ignore_changes path must lead through blocks to an argument."""
    errors = []
    for block in lifecycle:
        for entry in block.get("ignore_changes", []):
            path = entry.removeprefix("${").removesuffix("}")
            if path == "all":
                continue
            spec = schema["structs"][struct]
            steps = [re.sub(r"\[[^\]]*\]$", "", step) for step in path.split(".")]
            for index, step in enumerate(steps):
                last = index == len(steps) - 1
                if step in spec["blocks"]:
                    spec = schema["structs"][spec["blocks"][step]["struct"]]
                elif not (last and step in spec["attributes"]):
                    errors.append(f"{where}: lifecycle.ignore_changes: no such argument {path}")
                    break
    return errors


def check_body(schema: dict, body: dict, struct: str, where: str, top: bool) -> list[str]:
    spec = schema["structs"][struct]
    errors: list[str] = []
    present: set[str] = set()
    for key, value in body.items():
        if top and key == "lifecycle":
            errors += check_ignore_changes(schema, value, struct, where)
        if key.startswith("__") or (top and key in META_ARGUMENTS):
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, dynamic_body in dynamic.items():
                    name = unlabel(label)
                    if name not in spec["blocks"]:
                        errors.append(f'{where}: dynamic "{name}" is not a block of this schema')
                        continue
                    present.add(name)
                    for content in dynamic_body.get("content", []):
                        errors += check_body(
                            schema, content, spec["blocks"][name]["struct"], f"{where}.{name}", False
                        )
            continue
        if key in spec["attributes"]:
            present.add(key)
            if is_block(value):
                errors.append(f"{where}.{key}: an argument, written as a block (use `{key} = ...`)")
        elif key in spec["blocks"]:
            present.add(key)
            if not is_block(value):
                errors.append(f"{where}.{key}: a block, written as an argument (use `{key} {{ ... }}`)")
                continue
            for item in value:
                errors += check_body(schema, item, spec["blocks"][key]["struct"], f"{where}.{key}", False)
        else:
            errors.append(f"{where}.{key}: unknown argument")
    for name, required in spec["attributes"].items():
        if required and name not in present:
            errors.append(f"{where}: missing required argument {name}")
    for name, block in spec["blocks"].items():
        if block["required"] and name not in present:
            errors.append(f"{where}: missing required block {name}")
    return errors


def check_directory(schema: dict, directory: Path) -> list[str]:
    """Every problem found, as 'file: where: what' lines (empty: the files fit the schema)."""
    errors: list[str] = []
    declared: dict[tuple[str, str], str] = {}
    for file, kind, type_, name, body in parse_blocks(directory):
        prefix = "data." if kind == "data" else ""
        where = f"{file}: {prefix}{type_}.{name}"
        entry = schema[kind].get(type_)
        if entry is None:
            errors.append(f"{where}: no such {'data source' if kind == 'data' else 'resource type'}")
            continue
        declared[(kind, f"{type_}.{name}")] = type_
        errors += check_body(schema, body, entry["struct"], where, top=True)

    for path in sorted(directory.glob("*.tf")):
        import hcl2

        with path.open() as handle:
            text = " ".join(strings_in(hcl2.load(handle)))
        for data, type_, name, attribute in set(REFERENCE.findall(text)):
            kind = "data" if data else "resource"
            entry = schema[kind].get(type_)
            if entry is None or (kind, f"{type_}.{name}") not in declared:
                continue  # reported above, or not a reference (a name inside a string)
            if attribute not in entry["readable"]:
                errors.append(f"{path.name}: {data}{type_}.{name}.{attribute}: no such attribute")
    return sorted(set(errors))
