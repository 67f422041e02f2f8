"""Turn the jsii assembly of @cdktf/provider-aws (generated from the AWS provider's own
schema) into the small JSON the offline schema check reads.

    python3 scripts/provider_schema.py package/.jsii out.json

Output: {"provider_version", "resource": {type: entry}, "data": {type: entry}, "structs":
{fqn: {"attributes": {name: required}, "blocks": {name: {"required", "struct"}}}}}, where
an entry is {"struct": fqn of its arguments, "readable": [attribute names]}.
Standard library only: install-deploy-tools.sh runs it with any python3.
"""

from __future__ import annotations

import json
import re
import sys

LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/aws/([0-9.]+)/docs/(resources|data-sources)/\w+ (aws_\w+)\}"
)
ANCHOR = re.compile(r"\{@link \S+#(\w+) ")


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def struct_fqns(type_ref: dict) -> list[str]:
    """The non-cdktf struct types a property may hold (directly, in a list, in a union)."""
    if "fqn" in type_ref:
        return [] if type_ref["fqn"].startswith("cdktf.") else [type_ref["fqn"]]
    if "collection" in type_ref:
        return struct_fqns(type_ref["collection"]["elementtype"])
    if "union" in type_ref:
        return [fqn for member in type_ref["union"]["types"] for fqn in struct_fqns(member)]
    return []


def convert(assembly: dict) -> dict:
    types = assembly["types"]
    out: dict = {"provider_version": "", "resource": {}, "data": {}, "structs": {}}
    pending: list[str] = []

    for type_ in types.values():
        if type_.get("kind") != "class":
            continue
        match = LINK.search(type_.get("docs", {}).get("summary", ""))
        params = type_.get("initializer", {}).get("parameters", [])
        if not match or len(params) < 3 or "fqn" not in params[2]["type"]:
            continue
        version, kind, name = match.groups()
        out["provider_version"] = out["provider_version"] or version
        config = params[2]["type"]["fqn"]
        readable = {
            snake(prop["name"])
            for prop in type_.get("properties", [])
            if not prop.get("static") and not prop["name"].endswith("Input")
        }
        section = "resource" if kind == "resources" else "data"
        out[section][name] = {"struct": config, "readable": sorted(readable)}
        pending.append(config)

    while pending:
        fqn = pending.pop()
        if fqn in out["structs"] or fqn not in types:
            continue
        attributes: dict[str, bool] = {}
        blocks: dict[str, dict] = {}
        for prop in types[fqn].get("properties", []):
            anchor = ANCHOR.search(prop.get("docs", {}).get("summary", ""))
            name = anchor[1] if anchor else snake(prop["name"])
            if prop["name"] in (
                "connection",
                "count",
                "dependsOn",
                "forEach",
                "lifecycle",
                "provider",
                "provisioners",
            ):
                continue  # cdktf's own TerraformMetaArguments, not the provider's
            required = not prop.get("optional", False)
            nested = struct_fqns(prop["type"])
            if nested:
                blocks[name] = {"required": required, "struct": nested[0]}
                pending.append(nested[0])
            else:
                attributes[name] = required
        out["structs"][fqn] = {"attributes": attributes, "blocks": blocks}
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        schema = convert(json.load(handle))
    with open(argv[1], "w", encoding="utf-8") as handle:
        json.dump(schema, handle, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
