"""config/README.md documents every key of the config schema, under its dotted path, with the schema's default."""

from __future__ import annotations

import re

import yaml

from .support import ROOT

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
README = ROOT / "config" / "README.md"
#: A key's table row, `| `data.demo.seed` | `0` | meaning |`: its path and its default cell.
ROW = re.compile(r"^\| `([a-z0-9_.]+)` \|([^|]*)\|", re.MULTILINE)
#: A section's heading, `### `data.demo``.
HEADING = re.compile(r"^#+ `([a-z0-9_.]+)`", re.MULTILINE)


def schema_keys(properties: dict, prefix: str = "") -> dict[str, dict]:
    """Every key under ``properties`` by dotted path, through the ``properties`` of nested objects."""
    keys = {}
    for name, spec in properties.items():
        keys[prefix + name] = spec
        keys |= schema_keys(spec.get("properties", {}), f"{prefix}{name}.")
    return keys


def test_every_key_of_the_schema_is_documented_with_its_default():
    keys = schema_keys(yaml.safe_load(SCHEMA.read_text())["properties"])
    text = README.read_text()
    rows = dict(ROW.findall(text))
    documented = set(rows) | set(HEADING.findall(text))
    assert sorted(set(keys) - documented) == [], "keys of the schema that config/README.md does not document"
    assert sorted(documented - set(keys)) == [], "keys documented in config/README.md that the schema lacks"
    for path, spec in keys.items():
        if "properties" in spec:  # a section: its heading or row introduces the keys documented above
            continue
        assert path in rows, f"{path} has no table row"
        if isinstance(spec.get("default"), dict):  # a download's url and md5: described in words
            continue
        cell = rows[path].strip()
        assert re.fullmatch(r"`[^`]+`", cell), f"{path}: the default cell {cell!r} is not one `value`"
        assert yaml.safe_load(cell[1:-1]) == spec["default"], f"{path}: {cell} is not the schema's default"
