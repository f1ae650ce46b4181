"""Errors a user sees: what went wrong and what to do next, on one line."""


class GatewayError(Exception):
    """A failure the user can act on. ``str()`` is the one line the CLI prints."""

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(f"{what}: {fix}")
        self.what = what
        self.fix = fix
