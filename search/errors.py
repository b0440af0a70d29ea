"""The two kinds of trouble nas-run keeps apart.

`UserError`: the user's input is wrong (space file, flag, missing data files). The CLI prints its message
as one line on stderr and exits with `status` (2), having written nothing. Trial-level trouble (NaN loss,
OOM, time overrun) is not an exception at this level: it ends one trial with a reason (see train.py).
"""


class UserError(Exception):
    status = 2


class SpaceError(UserError):
    def __init__(self, file: str, key: str, expected: str, got=None, *, show_got: bool = True):
        msg = f"{file}: {key}: expected {expected}"
        if show_got:
            msg += f", got {got!r}"
        super().__init__(msg)
        self.file, self.key = file, key
