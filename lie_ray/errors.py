"""The one exception type users see.

A ``LieRayError`` carries a single line that names the problem and the fix. The CLI prints it
without a traceback and exits non-zero; everything else is a bug and keeps its traceback.
"""


class LieRayError(Exception):
    """A problem with the user's input or environment, described in one actionable line."""
