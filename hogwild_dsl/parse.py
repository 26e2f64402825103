"""Stage 1, parse: .hog text -> a syntax tree of plain dataclasses with positions.

The grammar (grammar/hog.lark) is data; this module runs Lark's LALR parser with a
Python-style indenter and turns Lark's tree into the small `Syntax` nodes below, each carrying
the line and column the checker quotes in its errors. Syntax errors become `SpecError`s that
say what was expected in the language's words, not Lark's token names.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from importlib import resources

import lark
from lark import Lark, Token, Transformer, v_args
from lark.indenter import Indenter

from .errors import SpecError

# ---------------------------------------------------------------- syntax nodes


@dataclass(frozen=True)
class Node:
    line: int
    column: int


@dataclass(frozen=True)
class Num(Node):
    value: float
    text: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Index(Node):
    name: Name
    args: tuple


@dataclass(frozen=True)
class Call(Node):
    fn: str
    args: tuple


@dataclass(frozen=True)
class SumOver(Node):
    var: Name
    source: Node
    body: Node


@dataclass(frozen=True)
class BinOp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class ModelDecl(Node):
    name: Name


@dataclass(frozen=True)
class DimDecl(Node):
    names: tuple


@dataclass(frozen=True)
class ConstDecl(Node):
    name: Name
    value: Num


@dataclass(frozen=True)
class DataDecl(Node):
    name: Name
    dims: tuple
    kind: Name


@dataclass(frozen=True)
class Constraint(Node):
    kind: str            # "named" (in simplex), "call" (in ball(R)), "box", "lower"
    name: Name | None
    values: tuple


@dataclass(frozen=True)
class Init(Node):
    kind: str            # "value", "named" (= uniform), "random" (~ normal(a, b))
    name: Name | None
    values: tuple


@dataclass(frozen=True)
class ParamDecl(Node):
    name: Name
    dims: tuple
    constraint: Constraint | None
    init: Init | None


@dataclass(frozen=True)
class TrainDecl(Node):
    items: tuple         # ((Name, Num), ...)


@dataclass(frozen=True)
class Let(Node):
    name: Name
    value: Node


@dataclass(frozen=True)
class Loss(Node):
    value: Node


@dataclass(frozen=True)
class Reg(Node):
    kind: Name
    lam: Num
    targets: tuple
    unscaled: bool


@dataclass(frozen=True)
class Predict(Node):
    value: Node


@dataclass(frozen=True)
class ForBlock(Node):
    vars: tuple          # one or two Names
    source: Name
    body: tuple


@dataclass(frozen=True)
class Module:
    statements: tuple
    source: str = field(repr=False)


# ---------------------------------------------------------------- the parser


class _HogIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@functools.cache
def _parser() -> Lark:
    grammar = resources.files("hogwild_dsl.grammar").joinpath("hog.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=_HogIndenter(), propagate_positions=True,
                maybe_placeholders=False)


def _pos(tok) -> tuple[int, int]:
    return tok.line, tok.column


def _name(tok: Token) -> Name:
    return Name(tok.line, tok.column, str(tok))


def _num(tok: Token, negative=False) -> Num:
    text = str(tok)
    value = float(text)
    return Num(tok.line, tok.column, -value if negative else value, ("-" if negative else "") + text)


@v_args(meta=True)
class _ToSyntax(Transformer):
    """Lark tree -> syntax dataclasses (one method per grammar rule, as in Lark's examples)."""

    def start(self, meta, items):
        return tuple(items)

    def model_decl(self, meta, items):
        return ModelDecl(meta.line, meta.column, _name(items[0]))

    def dim_decl(self, meta, items):
        return DimDecl(meta.line, meta.column, tuple(_name(t) for t in items))

    def const_decl(self, meta, items):
        return ConstDecl(meta.line, meta.column, _name(items[0]), items[1])

    def data_decl(self, meta, items):
        return DataDecl(meta.line, meta.column, _name(items[0]),
                        tuple(_name(t) for t in items[1:-1]), _name(items[-1]))

    def shape(self, meta, items):
        return tuple(_name(t) for t in items)

    def param_decl(self, meta, items):
        name, rest = _name(items[0]), items[1:]
        dims, constraint, init = (), None, None
        for item in rest:
            if isinstance(item, tuple):
                dims = item
            elif isinstance(item, Constraint):
                constraint = item
            elif isinstance(item, Init):
                init = item
        return ParamDecl(meta.line, meta.column, name, dims, constraint, init)

    def c_named(self, meta, items):
        return Constraint(meta.line, meta.column, "named", _name(items[0]), ())

    def c_call(self, meta, items):
        return Constraint(meta.line, meta.column, "call", _name(items[0]), (items[1],))

    def c_box(self, meta, items):
        return Constraint(meta.line, meta.column, "box", None, tuple(items))

    def c_lower(self, meta, items):
        return Constraint(meta.line, meta.column, "lower", None, tuple(items))

    def init_value(self, meta, items):
        return Init(meta.line, meta.column, "value", None, tuple(items))

    def init_named(self, meta, items):
        return Init(meta.line, meta.column, "named", _name(items[0]), ())

    def init_random(self, meta, items):
        return Init(meta.line, meta.column, "random", _name(items[0]), tuple(items[1:]))

    def pos(self, meta, items):
        return _num(items[0])

    def negnum(self, meta, items):
        return _num(items[0], negative=True)

    def train_decl(self, meta, items):
        return TrainDecl(meta.line, meta.column, tuple(items))

    def train_item(self, meta, items):
        return (_name(items[0]), items[1])

    def for_block(self, meta, items):
        return ForBlock(meta.line, meta.column, items[0], _name(items[1]), tuple(items[2:]))

    def one_var(self, meta, items):
        return (_name(items[0]),)

    def two_vars(self, meta, items):
        return (_name(items[0]), _name(items[1]))

    def let_stmt(self, meta, items):
        return Let(meta.line, meta.column, _name(items[0]), items[1])

    def loss_stmt(self, meta, items):
        return Loss(meta.line, meta.column, items[0])

    def reg_stmt(self, meta, items):
        unscaled = isinstance(items[-1], Token) and items[-1].type == "UNSCALED"
        targets = items[2:-1] if unscaled else items[2:]
        return Reg(meta.line, meta.column, _name(items[0]), items[1], tuple(targets), unscaled)

    def predict_stmt(self, meta, items):
        return Predict(meta.line, meta.column, items[0])

    def _binop(self, op, meta, items):
        return BinOp(meta.line, meta.column, op, items[0], items[1])

    def add(self, meta, items):
        return self._binop("+", meta, items)

    def sub(self, meta, items):
        return self._binop("-", meta, items)

    def mul(self, meta, items):
        return self._binop("*", meta, items)

    def div(self, meta, items):
        return self._binop("/", meta, items)

    def pow(self, meta, items):
        return self._binop("^", meta, items)

    def neg(self, meta, items):
        return Neg(meta.line, meta.column, items[0])

    def number(self, meta, items):
        return _num(items[0])

    def name(self, meta, items):
        return _name(items[0])

    def index(self, meta, items):
        return Index(meta.line, meta.column, _name(items[0]), tuple(items[1:]))

    def call(self, meta, items):
        args = tuple(a for a in items[1:] if a is not None)
        return Call(meta.line, meta.column, str(items[0]), args)

    def sum_over(self, meta, items):
        return SumOver(meta.line, meta.column, _name(items[1]), items[2], items[3])


# Lark's terminal names -> what a user of the language would call them.
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "_NL": "the end of the line",
    "_INDENT": "an indented block", "_DEDENT": "the end of the block", "COLON": "':'",
    "COMMA": "','", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
    "EQUAL": "'='", "TILDE": "'~'", "MORETHAN": "'>'", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "CIRCUMFLEX": "'^'", "SUM": "'sum'", "IN": "'in'",
    "ON": "'on'", "UNSCALED": "'unscaled'", "$END": "the end of the file",
}


def _word(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    pattern = _parser().get_terminal(terminal).pattern
    if pattern.type == "str":
        return repr(pattern.value)
    return terminal.lower()


def _token_text(token) -> str:
    if token.type == "_NL":
        return "the end of the line"
    if token.type == "$END":
        return "the end of the file"
    if token.type in ("_INDENT", "_DEDENT"):
        return "a change of indentation"
    return repr(str(token))


_KEYWORDS = {"model", "dim", "const", "data", "param", "for", "in", "let", "loss", "reg", "on",
             "predict", "train", "unscaled", "sum"}


def _syntax_hint(token, expected: set[str]) -> str | None:
    text = str(token)
    if "COLON" in expected and token.type == "_NL":
        return "a 'for' line ends with ':' and its block is indented below it"
    if "NAME" in expected and text in _KEYWORDS:
        return f"'{text}' is a keyword of the language and cannot be used as a name"
    if "_INDENT" in expected:
        return "indent the statements of a 'for' block (spaces)"
    if token.type == "_INDENT":
        return "only the statements inside a 'for' block are indented"
    if "RPAR" in expected or "RSQB" in expected:
        return "check that every '(' and '[' is closed"
    return None


def _check_layout(text: str) -> None:
    """Tabs in indentation are an error with their position (LANGUAGE.md, lexical rules)."""
    for number, line in enumerate(text.splitlines(), start=1):
        indent = re.match(r"[ \t]*", line).group(0)
        if "\t" in indent and line.strip() and not line.strip().startswith("#"):
            raise SpecError("a tab in indentation", number, indent.index("\t") + 1, text,
                            hint="indent with spaces only")


def parse(text: str) -> Module:
    """Parse .hog source text into a Module of syntax nodes; raise SpecError on bad syntax."""
    if not isinstance(text, str):
        raise SpecError("a spec must be text (str)")
    _check_layout(text)
    source = text if text.endswith("\n") else text + "\n"
    try:
        tree = _parser().parse(source)
    except lark.exceptions.UnexpectedToken as e:
        token = e.token
        expected = {t for t in e.expected if not t.startswith("__")}
        words = sorted({_word(t) for t in expected})
        line = getattr(token, "line", None) or e.line
        column = getattr(token, "column", None) or e.column
        if token.type == "$END":
            line, column = _end_position(source)
        message = f"unexpected {_token_text(token)}"
        if words:
            message += "; expected " + (words[0] if len(words) == 1 else
                                        ", ".join(words[:-1]) + " or " + words[-1])
        raise SpecError(message, line, column, source, hint=_syntax_hint(token, expected)) from None
    except lark.exceptions.UnexpectedCharacters as e:
        char = source[e.pos_in_stream] if e.pos_in_stream < len(source) else "?"
        raise SpecError(f"unexpected character {char!r}", e.line, e.column, source,
                        hint="names are letters, digits and '_'; operators are + - * / ^") from None
    except lark.exceptions.UnexpectedEOF as e:
        line, column = _end_position(source)
        raise SpecError("the spec ends in the middle of a statement", line, column, source) from None
    except lark.exceptions.LarkError as e:  # e.g. a dedent to a column that was never indented
        line, column = _indent_error_position(source)
        raise SpecError("inconsistent indentation", line, column, source,
                        hint="indent every statement of a block by the same number of spaces") from None
    return Module(_ToSyntax().transform(tree), source)


def _end_position(source: str) -> tuple[int, int]:
    lines = source.rstrip("\n").splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _indent_error_position(source: str) -> tuple[int, int]:
    """Find the first line whose indentation matches no enclosing level (for the message)."""
    levels = [0]
    for number, line in enumerate(source.splitlines(), start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        width = len(line) - len(line.lstrip(" "))
        if width > levels[-1]:
            levels.append(width)
        else:
            while levels and width < levels[-1]:
                levels.pop()
            if not levels or width != levels[-1]:
                return number, width + 1
    return 1, 1
