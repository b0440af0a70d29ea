"""The kinds of trouble nas-run keeps apart. Each is one line on stderr and an exit status, no traceback.

`UserError` (2): the user's input is wrong (space file, flag, missing data files); nothing was written.
`RunError` (1): infrastructure or a fault that repeats (storage unreachable, a worker process died, every
candidate fails the same way). Trial-level trouble (NaN loss, one OOM, time overrun) is not an exception at
this level: it ends one trial with a reason (see objective.py). Bugs keep their traceback.
"""


class OneLineError(Exception):
    status = 1


class UserError(OneLineError):
    status = 2


class RunError(OneLineError):
    status = 1


class SpaceError(UserError):
    def __init__(self, file: str, key: str, expected: str, got=None, *, show_got: bool = True):
        msg = f"{file}: {key}: expected {expected}"
        if show_got:
            msg += f", got {got!r}"
        super().__init__(msg)
        self.file, self.key = file, key
