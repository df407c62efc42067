"""Option fields: one dataclass field carries an option's default, help text and command-line form.

`opt(default, help, ...)` is an option (`--name`, keyword in Python), `arg(help, ...)` a positional
argument. Metadata keys read by the CLI generator (`aekit.cli.parser`): help, choices, flag (the
flag's name when not --field-name), short (e.g. "-o"), metavar, required (on the command line
only), nargs, negate (a store_false flag such as --quiet for verbose), off (a second flag that
sets the field to None, with its help: --no-cache for cache_dir), positional; and `what`, how
errors name the option (default: its name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from aekit.core.errors import AekitError


def opt(default: Any, help: str, factory: bool = False, **meta: Any) -> Any:
    """An option with a default; `factory=True` for mutable defaults (a list)."""
    metadata = {"help": help, **meta}
    if factory:
        return field(default_factory=default, metadata=metadata, kw_only=True)
    return field(default=default, metadata=metadata, kw_only=True)


def arg(help: str, default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A positional argument (required unless it has a default)."""
    return field(default=default, metadata={"help": help, "positional": True, **meta}, kw_only=False)


def check_choices(fields: Iterable[dataclasses.Field], values: Mapping[str, Any], where: str = "") -> None:
    """Every value of a field with `choices` is one of them (None allowed for optional fields)."""
    for f in fields:
        choices = f.metadata.get("choices")
        value = values.get(f.name)
        if choices and value is not None and value not in choices:
            what = f.metadata.get("what", f.name)
            raise AekitError(f"{where}unknown {what} {value!r}; choose one of {', '.join(map(str, choices))}")


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (a fresh one for factory defaults); None when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default
