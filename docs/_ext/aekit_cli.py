"""Sphinx extension: the CLI reference, generated at build time from aekit's own parser.

`aekit.cli.parser.build_parser()` makes the command line from the options dataclasses
(config/commands.py `COMMANDS` and config/train.py `TrainConfig`), so walking it gives every
command with every flag, its help and its default, and the page can never drift from the code.

    ```{aekit-cli}
    ```

writes one section per command: its description, its usage line and a table of its arguments.
Each section gets the label `cli-COMMAND`, so other pages link to it with {ref}`cli-train`.
"""

from __future__ import annotations

import argparse
import dataclasses

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from aekit.cli.parser import build_parser
from aekit.config.commands import COMMANDS, TRAINS
from aekit.config.fields import default_of
from aekit.config.train import TrainConfig


def _fields(command: str) -> dict[str, dataclasses.Field]:
    """The dataclass fields behind a command's arguments: its own options, then TrainConfig's."""
    own = {f.name: f for f in dataclasses.fields(COMMANDS[command])}
    if command in TRAINS:
        return {**{f.name: f for f in dataclasses.fields(TrainConfig)}, **own}
    return own


def _default(action: argparse.Action, field: dataclasses.Field | None) -> str:
    """The default as the user meets it: the dataclass field's (the parser leaves training
    options at None so that a --config file can set them)."""
    if action.required or isinstance(action, argparse._HelpAction):
        return ""
    if isinstance(action, argparse._StoreConstAction) and action.const is None:
        return ""  # --no-cache: a second flag for a field whose default the first one shows
    value = default_of(field) if field is not None else action.default
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off"  # a switch; the field's default is what not giving it means
    if value is None or value == []:
        return ""
    return str(value)


def _help(action: argparse.Action, field: dataclasses.Field | None) -> str:
    text = field.metadata["help"] if field is not None and "help" in field.metadata else (action.help or "")
    if isinstance(action, argparse._StoreConstAction) and action.const is None:
        text = action.help or ""
    return text.replace("%%", "%")


def _names(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The flags and metavar as `aekit COMMAND --help` shows them ("-o FILE, --output FILE")."""
    return parser._get_formatter()._format_action_invocation(action)


def _text(text: str) -> nodes.paragraph:
    """Help text with its `code` spans as literals."""
    para = nodes.paragraph()
    for i, part in enumerate(text.split("`")):
        if part:
            para += nodes.literal(text=part) if i % 2 else nodes.Text(part)
    return para


def _row(*cells: nodes.Node | str) -> nodes.row:
    row = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        if isinstance(cell, str):
            entry += nodes.paragraph(text=cell)
        else:
            entry += cell
        row += entry
    return row


def _table(rows: list[tuple[str, str, str]]) -> nodes.table:
    table = nodes.table(classes=["aekit-cli-table"])
    group = nodes.tgroup(cols=3)
    table += group
    for width in (30, 55, 15):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row("argument", "what it does", "default")
    group += head
    body = nodes.tbody()
    for name, text, default in rows:
        literal = nodes.paragraph()
        literal += nodes.literal(text=name)
        body += _row(literal, _text(text), _text(f"`{default}`") if default else "")
    group += body
    return table


class AekitCli(SphinxDirective):
    """One section per `aekit` command, read from the parser the `aekit` command itself uses."""

    def run(self) -> list[nodes.Node]:
        parser = build_parser()
        std = self.env.get_domain("std")
        sections: list[nodes.Node] = []
        for name, sub in parser.subparsers.items():
            label = f"cli-{name}"
            section = nodes.section(ids=[label], names=[label])
            section += nodes.title(text=f"aekit {name}")
            if sub.description:
                section += _text(sub.description.replace("%%", "%"))
            usage = sub.format_usage().removeprefix("usage: ").strip()
            section += nodes.literal_block(usage, usage, language="text")
            fields = _fields(name)
            rows = [
                (_names(sub, a), _help(a, fields.get(a.dest)), _default(a, fields.get(a.dest)))
                for a in sub._actions
                if not isinstance(a, argparse._HelpAction)
            ]
            if rows:
                section += _table(rows)
            std.note_hyperlink_target(label, self.env.docname, label, f"aekit {name}")
            sections.append(section)
        return sections


def setup(app):
    app.add_directive("aekit-cli", AekitCli)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
