"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class AekitError(Exception):
    """A problem with the user's input or options; the message says what to do next."""
