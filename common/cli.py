"""How every entry point ends: a user error (bad flag value, missing file, malformed row, bad config) is one line
naming the flag or file and the fix, without a traceback; --debug shows the traceback."""

from __future__ import annotations

import sys

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)


def cli(main):
    """The console entry point of a stage or tool: main(argv) with user errors reported in one line (exit 2)."""
    def entry(argv: list[str] | None = None):
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
        try:
            return main(argv)
        except USER_ERRORS as e:
            if debug:
                raise
            print(f"error: {e}\n(run again with --debug for the traceback)", file=sys.stderr)
            raise SystemExit(2) from None
    entry.__doc__ = main.__doc__
    return entry
