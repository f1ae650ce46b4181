"""Errors a user sees: what went wrong and what to do next, on one line."""

import functools
import sys
from collections.abc import Callable


class GatewayError(Exception):
    """A failure the user can act on. ``str()`` is the one line the CLI prints."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}: {fix}")
        self.what = what
        self.fix = fix


def friendly(fn: Callable) -> Callable:
    """For CLI commands: a GatewayError becomes one line on stderr and exit status 2 (cleanup has
    already run on the way out); Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GatewayError as exc:
            print(f"xdpgw: error: {exc}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper
