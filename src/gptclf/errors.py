"""The one exception type for user mistakes; the CLI turns it into a one-line message and exit 2."""


class GptclfError(Exception):
    """A problem with the user's input or environment that the user can fix."""
