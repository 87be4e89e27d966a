"""What the YAML reader and the original's spellings both look at in a composed document."""

from __future__ import annotations

import yaml

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"


def scalar_key(node: yaml.Node) -> str | None:
    """The name of a mapping key that is a plain string; None for any other key."""
    return node.value if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG else None
