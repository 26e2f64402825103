"""The error classes of API.md: every failure a user can cause is one of these."""


class HogwildError(Exception):
    """Base of every error the package raises on purpose."""


class SpecError(HogwildError):
    """Something is wrong in a .hog spec; carries the position and a quoted line with a caret."""

    def __init__(self, message, line=None, column=None, source=None, hint=None):
        self.line = line
        self.column = column
        self.hint = hint
        self.bare_message = message
        text = message
        if line is not None and column is not None:
            text = f"line {line}, column {column}: {message}"
            if source is not None:
                lines = source.splitlines()
                if 1 <= line <= len(lines):
                    shown = lines[line - 1].replace("\t", " ")
                    text += f"\n    {shown}\n    {' ' * (column - 1)}^"
        if hint:
            text += f"\nhint: {hint}"
        super().__init__(text)


class DataError(HogwildError):
    """Data that does not fit the spec (or a malformed data file); names the data and the problem."""


class CompileError(HogwildError):
    """The C build failed or no compiler was found; carries the compiler's message and the log path."""

    def __init__(self, message, log_path=None):
        self.log_path = log_path
        text = message if log_path is None else f"{message}\nfull log: {log_path}"
        super().__init__(text)


class DivergenceError(HogwildError):
    """The objective became NaN/inf or exploded; the trainer rolls back to the last finite
    epoch's params (for a model larger than its data: those at the fit's start, or after the
    last epoch whose objective rose; docs/api.md, "Divergence")."""

    def __init__(self, message, epoch=None, hint=None):
        self.epoch = epoch
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nhint: {hint}")
