"""The one exception type for user-facing problems.

A `VaelabError` message is a single line that names the problem and the fix; the CLI prints it without a
traceback and exits with code 2.
"""


class VaelabError(Exception):
    """A problem the user can fix: bad input, a missing or corrupted file, a mismatched checkpoint.

    Examples:
        ```python
        import vaelab

        try:
            vaelab.load_model("runs/missing")
        except vaelab.VaelabError as error:
            print(error)  # run directory runs/missing does not exist; train one with `vaelab train --out ...`
        ```
    """
