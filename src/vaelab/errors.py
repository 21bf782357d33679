"""The one exception type for user-facing problems.

A `VaelabError` message is a single line that names the problem and the fix; the CLI prints it without a
traceback and exits with code 2.
"""


class VaelabError(Exception):
    """A problem the user can fix: bad input, a missing or corrupted file, a mismatched checkpoint."""
