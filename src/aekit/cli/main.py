"""The `aekit` command: a thin layer over library functions; `main(argv)` is callable from tests.

The parsers are generated from the options dataclasses (cli/parser.py), each command is a plain
function (cli/commands.py). User errors (AekitError, bad flags) print one line and exit with
code 2, never a traceback.
"""

from __future__ import annotations

import sys

from aekit.cli.parser import build_parser
from aekit.core.errors import AekitError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # report unknown flags as the sub-command's error, with the closest flag
        parser.subparsers.get(args.command, parser).unknown(extra)
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from aekit.cli.commands import run

        code = run(args)
        if "aekit.core.distributed" in sys.modules:  # a torchrun launch: all ranks leave together
            sys.modules["aekit.core.distributed"].stop()
        return code
    except AekitError as e:
        print(f"aekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
