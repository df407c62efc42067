"""The command-line parser, generated from the options dataclasses (config/commands.py and
TrainConfig): one flag per field, with the field's help, default, choices and metavar."""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing

from aekit.config.commands import COMMANDS, TRAINS, Options
from aekit.config.fields import default_of
from aekit.config.train import TrainConfig
from aekit.core.errors import did_you_mean
from aekit.version import __version__

FLAG_NAMES = {"extensions": "--ext"}
OFF = "off_"  # the destination of a field's off flag (--no-cache) is OFF + the field's name


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message that suggests the closest name for a mistyped one."""

    def error(self, message: str) -> typing.NoReturn:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += did_you_mean(choice.group(1), re.findall(r"'?([\w.:+-]+)'?", choice.group(2)))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def unknown(self, extra: list[str]) -> typing.NoReturn:
        """The error for arguments no option took, with the closest flag to the first unknown one."""
        flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        first = next((e.split("=", 1)[0] for e in extra if e.startswith("--")), None)
        self.error(f"unrecognized arguments: {' '.join(extra)}" + (did_you_mean(first, flags) if first else ""))


def _flag_type(annotation: str) -> tuple[type, bool]:
    """(element type, is a list) for a field's string annotation; Any reads as str."""
    names = {"list": list, "int": int, "float": float, "str": str, "bool": bool, "Any": str}
    hint = eval(annotation, names) if isinstance(annotation, str) else annotation  # noqa: S307
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) else [hint]
    hint = args[0]
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def _int_list(text: str) -> list[int]:
    """'4,3,2' or '4' -> [4, 3, 2] / [4]; used with nargs='+' so '4 3 2' works too."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers like 4,3,2, got {text!r}") from None


class _Flatten(argparse.Action):
    """Joins the lists of `_int_list` values: '--bands 4,3 2' is [4, 3, 2]."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, [v for group in values for v in group])


def _argument(f: dataclasses.Field, default: typing.Any, show_default: bool) -> tuple[list[str], dict]:
    """The names and keywords of `add_argument` for one field."""
    meta = f.metadata
    kind, is_list = _flag_type(f.type)
    help_text = meta["help"]
    if (
        show_default
        and f.default not in (None, dataclasses.MISSING)
        and kind is not bool
        and "default" not in help_text
    ):
        help_text += f" (default: {f.default})"
    if meta.get("positional"):
        return [f.name], {"help": help_text, **({"nargs": meta["nargs"]} if "nargs" in meta else {})}
    flag = meta.get("flag") or FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
    names = [meta["short"], flag] if "short" in meta else [flag]
    kw: dict = {"dest": f.name, "default": default, "help": help_text}
    if kind is bool:  # a negated flag (--quiet for verbose) is on unless given: the command line prints
        return names, {**kw, "action": "store_false", "default": True} if meta.get("negate") else {
            **kw,
            "action": "store_true",
        }
    kw["type"] = kind
    for key in ("choices", "metavar", "required"):
        if key in meta:
            kw[key] = meta[key]
    if f.name == "extensions" or meta.get("append"):  # repeated flags: --ext .a --ext .b
        kw.update(action="append", metavar=meta.get("metavar", "EXT"))
    elif is_list and kind is int:
        kw.update(nargs="+", metavar="N", type=_int_list, action=_Flatten)
    elif is_list and f.name != "columns":  # --columns is one comma-separated argument, split by the config
        kw.update(nargs="+", metavar="N")
    return names, kw


def add_fields(p: argparse.ArgumentParser, fields: typing.Iterable[dataclasses.Field], train: bool = False) -> None:
    """One argument per field. Training options default to None, so that only the flags given
    override a --config file; the others show and use their dataclass default."""
    for f in fields:
        names, kw = _argument(f, None if train else default_of(f), show_default=train)
        p.add_argument(*names, **kw)
        if "off" in f.metadata:  # --no-cache: the field is None, whatever order the flags come in
            flag, help_text = f.metadata["off"]
            p.add_argument(flag, dest=OFF + f.name, action="store_true", help=help_text)


def add_command(sub: argparse._SubParsersAction, name: str, options: type[Options]) -> Parser:
    p = sub.add_parser(name, help=options.help, description=options.description)
    own = dataclasses.fields(options)
    add_fields(p, [f for f in own if f.metadata.get("positional")])
    add_fields(
        p, sorted((f for f in own if not f.metadata.get("positional")), key=lambda f: not f.metadata.get("required"))
    )
    if name in TRAINS:
        skip = {f.name for f in own} | set(options.train_skip)
        add_fields(p, [f for f in dataclasses.fields(TrainConfig) if f.name not in skip], train=True)
    return p


def build_parser() -> Parser:
    parser = Parser(prog="aekit", description="Train autoencoders on your own data, then use them.")
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parser.subparsers = sub.choices
    for name, options in COMMANDS.items():
        add_command(sub, name, options)
    return parser


def train_options(args: argparse.Namespace) -> dict:
    """The TrainConfig fields of parsed arguments, of the flags given only (--no-cache: cache_dir
    None, a choice that overrides a --config file)."""
    values = {f.name: _value(args, f) for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in values.items() if v is not None or getattr(args, OFF + k, False)}


def command_options(args: argparse.Namespace) -> Options:
    """The parsed arguments of a command as its options dataclass."""
    options = COMMANDS[args.command]
    return options(**{f.name: _value(args, f) for f in dataclasses.fields(options)})


def _value(args: argparse.Namespace, f: dataclasses.Field) -> typing.Any:
    """A field's parsed value: None when its off flag (--no-cache) was given."""
    return None if getattr(args, OFF + f.name, False) else getattr(args, f.name, None)
