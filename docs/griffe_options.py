"""A griffe extension for the API reference (mkdocs.yml loads it): each field of the config dataclasses gets the
help text of its `option(default, help)` as its docstring, and its default as its value, so the reference lists
every option with the text and default that `vaelab train --help` shows, from the one place they are written."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import griffe

CONFIG_MODULE = "vaelab.config"


class OptionHelp(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if cls.module.path != CONFIG_MODULE:
            return
        runtime = getattr(importlib.import_module(CONFIG_MODULE), cls.name, None)
        if runtime is None or not dataclasses.is_dataclass(runtime):
            return
        for field in dataclasses.fields(runtime):
            member = cls.members.get(field.name)
            if member is None or "help" not in field.metadata:
                continue
            default = field.default_factory() if field.default is dataclasses.MISSING else field.default
            member.value = repr(default)
            shown = field.metadata.get("shown")  # what a default of None stands for
            help_text = field.metadata["help"] + (f" None: {shown}." if shown else "")
            member.docstring = griffe.Docstring(help_text, parent=member)
