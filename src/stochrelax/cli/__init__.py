"""Command-line interface: ``stochrelax train | evaluate | attack | certify | report | results | sweep | reproduce |
runs | compare | bench | data info``.

:mod:`~stochrelax.cli.parser` builds the parser, :mod:`~stochrelax.cli.commands` holds what each
command does, and :func:`main` is the error boundary around them: every command validates its
inputs before doing any work and reports a bad input as one line on stderr
(``stochrelax: error: ...``) with exit status 2, leaving every file as it was;
``stochrelax --debug COMMAND`` shows the full traceback instead.
"""

from __future__ import annotations

import sys

from stochrelax.cli.commands import UsageError, resolve_device
from stochrelax.cli.parser import build_parser
from stochrelax.data.idx_files import DataError
from stochrelax.rundir.config import ConfigError
from stochrelax.rundir.layout import RunDirError
from stochrelax.study.sweep import SweepInterrupted
from stochrelax.training.loop import TrainingDiverged

__all__ = ["main", "build_parser", "resolve_device", "USER_ERRORS"]

USER_ERRORS = (UsageError, ConfigError, DataError, RunDirError, TrainingDiverged, SweepInterrupted)
"""Errors that are the user's to mend: one line and exit status 2."""


def _user_error(error: Exception) -> int:
    """Prints a user error as one line on stderr, whatever its message holds; returns exit status 2.

    Messages are written to be one line; a line break that still gets in (from a file name,
    say) is replaced by a space, so that the error is always exactly one line.
    """
    message = " ".join(line.strip() for line in str(error).splitlines())
    print(f"stochrelax: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stochrelax`` console script; returns the exit status.

    A user error (:data:`USER_ERRORS`) is one line on stderr and exit status 2, or, with
    ``--debug``, raised again so that its traceback shows. A bad command line is always
    one line: it has no traceback worth showing.
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        return _user_error(error)
    try:
        status = args.handler(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        return _user_error(error)
    except OSError as error:  # a read or write the command did not foresee: the file and why
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        return _user_error(UsageError(f"{where}{error.strerror or error}; check the path, its permissions and the "
                                      "free space"))
    except KeyboardInterrupt:
        print(f"stochrelax: interrupted; {args.interrupted}", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, and how to report it
        if args.debug:
            raise
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(f"stochrelax: internal error ({type(error).__name__}: {first_line}); run the command again with "
              "--debug and report its traceback", file=sys.stderr)
        return 1
    return status or 0


