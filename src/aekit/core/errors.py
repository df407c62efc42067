"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class AekitError(Exception):
    """A problem with the user's input or options; the message says what to do next."""


def did_you_mean(word: str, choices) -> str:
    """'; did you mean X?' for the closest of `choices` to a mistyped `word`, or ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
