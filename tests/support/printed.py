"""What a piece of code prints, logs or warns while it runs, for a session fixture.

`capfd` is per test, and it misses what a library logs through a handler that took
`sys.stderr` before the test began: transformers binds its handler to the stream of the
moment it is first imported, and sets its loggers not to propagate to the root logger. So a
test that loads a tokenizer after another test has loaded one sees none of transformers'
warnings in `capfd`. `printed()` gathers all of it, wherever it goes."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator


class _Records(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def _loggers_that_keep_their_records() -> list[logging.Logger]:
    """The root logger, transformers' (made now if it is not imported yet: it keeps the
    handler added here) and every logger that does not pass records on to the root."""
    existing = logging.Logger.manager.loggerDict.values()
    keeping = [log for log in existing if isinstance(log, logging.Logger) and not log.propagate]
    return [logging.getLogger(), logging.getLogger("transformers"), *keeping]


@contextlib.contextmanager
def printed() -> Iterator[list[str]]:
    """Lines of what the block writes to stderr (through Python or straight to the file
    descriptor, as Rust and C++ libraries do), logs at any level, or warns; filled in when
    the block ends."""
    lines: list[str] = []
    handler = _Records(lines)
    loggers = _loggers_that_keep_their_records()
    python_stderr = io.StringIO()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as fd_stderr:
        os.dup2(fd_stderr.fileno(), 2)
        for logger in loggers:
            logger.addHandler(handler)
        try:
            with (
                warnings.catch_warnings(record=True) as warned,
                contextlib.redirect_stderr(python_stderr),
            ):
                warnings.simplefilter("always")
                yield lines
        finally:
            for logger in loggers:
                logger.removeHandler(handler)
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            fd_stderr.seek(0)
            lines.extend(fd_stderr.read().decode(errors="replace").splitlines())
            lines.extend(python_stderr.getvalue().splitlines())
            lines.extend(f"{w.category.__name__}: {w.message}" for w in warned)
