"""How every entry point ends: a user error (bad flag value, missing file, malformed row, bad config) is one line
naming the flag or file and the fix, without a traceback; --debug shows the traceback. A training run that diverged
ends the same way, with its own exit status."""

from __future__ import annotations

import sys

from common.compat import check_versions

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError)
DIVERGED_EXIT = 3


class TrainingDiverged(RuntimeError):
    """A training stage's loss, gradients, weights or outputs went non-finite. Its fix is a setting (a lower
    learning rate), so it is reported in one line like a user error; its exit status (DIVERGED_EXIT) differs from
    a user error's 2, so that a pipeline can tell a run that blew up from one that never started."""


def cli(main):
    """The console entry point of a stage or tool: main(argv) with user errors reported in one line (exit 2) and a
    diverged training likewise (exit DIVERGED_EXIT). Called without argv (a console command, `python rl/grpo.py`)
    it reads sys.argv and returns None, since a console script exits with what its entry returns (a summary dict
    would be printed and exit 1); called with argv it returns main's result."""
    def entry(argv: list[str] | None = None):
        from_command_line = argv is None
        argv = list(sys.argv[1:] if argv is None else argv)
        debug = "--debug" in argv
        argv = [a for a in argv if a != "--debug"]
        try:
            check_versions()
            result = main(argv)
            return None if from_command_line else result
        except (*USER_ERRORS, TrainingDiverged) as e:
            if debug:
                raise
            diverged = isinstance(e, TrainingDiverged)
            fresh_line = "\n" if diverged else ""        # a diverged run stops in the middle of its progress bar
            print(f"{fresh_line}error: {e}\n(run again with --debug for the traceback)", file=sys.stderr)
            raise SystemExit(DIVERGED_EXIT if diverged else 2) from None
    entry.__doc__ = main.__doc__
    return entry
