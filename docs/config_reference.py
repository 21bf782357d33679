"""A MkDocs hook (mkdocs.yml `hooks:`): the configuration reference page is generated from the config dataclasses at
build time. The marker `<!-- options -->` becomes one table per section, each option with its YAML key, its flag of
`vaelab train`, its default and its help text: the same text and defaults as `vaelab train --help`."""

from __future__ import annotations

from itertools import groupby
from typing import Any

MARKER = "<!-- options -->"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def options_tables() -> str:
    from vaelab.config import described_options

    tables = []
    for section, options in groupby(described_options(), key=lambda described: described.section):
        rows = [f"| `{o.field.name}` | `{o.flag}` | `{cell(o.default_text)}` | {cell(o.help)} |" for o in options]
        tables.append("\n".join([f"### `{section}`", "", "| key | flag | default | what it sets |",
                                 "|---|---|---|---|", *rows]))
    return "\n\n".join(tables)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return markdown.replace(MARKER, options_tables()) if MARKER in markdown else markdown
