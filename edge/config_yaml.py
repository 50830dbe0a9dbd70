"""config.yaml, written from edge.config: the file documents every key with exactly the code's defaults.

    python -m edge.config_yaml config.yaml      regenerate the repository's file (a test keeps them equal)

`moodmic install-service` writes the same text to /etc/moodmic/config.yaml, so an installed wheel needs
no copy of the repository's file.
"""

from __future__ import annotations

import json
import sys
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path

from .config import Settings

HEADER = (
    "# moodmic configuration. Every key, with its default: an empty file or none at all means these values.",
    "# Lookup: --config FILE > $MOODMIC_CONFIG > /etc/moodmic/config.yaml > built-in defaults.",
    "# An unknown key, a wrong type or an out-of-range value stops moodmic with a message naming the key.",
    "# Keep an installed copy 0640 root:moodmic: it may name secrets (moodmic refuses one others can read).",
    "# Generated from edge/config.py by `python -m edge.config_yaml config.yaml`; edit the code, not this file.",
)
COMMENT_COLUMN = 32  # keys' comments line up here (longer lines get two spaces)


def yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    # Plain where YAML reads it back as the same string; else double-quoted ("on" would be a boolean).
    plain = text and text.replace("_", "").replace("-", "").isalnum() and text.lower() not in (
        "on", "off", "yes", "no", "true", "false", "null", "y", "n") and not text[0].isdigit()
    return text if plain else json.dumps(text)


def render() -> str:
    """The whole file: a commented section per settings dataclass, a commented line per key."""
    lines = list(HEADER)
    hints = typing.get_type_hints(Settings)
    for section in fields(Settings):
        cls = hints[section.name]
        lines += ["", f"# {(cls.__doc__ or section.name).strip()}", f"{section.name}:"]
        for f in fields(cls):
            if is_dataclass(typing.get_type_hints(cls)[f.name]):
                raise TypeError(f"{section.name}.{f.name}: config.yaml has one level of sections")
            default = f.default if f.default is not MISSING else None
            entry = f"  {f.name}: {yaml_scalar(default)}"
            lines.append(f"{entry.ljust(COMMENT_COLUMN - 2)}  # {f.metadata['doc']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1] if len(sys.argv) > 1 else "config.yaml").write_text(render(), encoding="utf-8")
