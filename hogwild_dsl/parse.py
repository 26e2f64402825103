"""Stage 1, parse: .hog text -> a syntax tree of plain dataclasses with positions.

The grammar (grammar/hog.lark) is data; this module runs Lark's LALR parser (built once per
process) with a Python-style indenter, and builds the small syntax nodes below as the parser
reduces, each carrying the line and column the checker quotes in its errors. Syntax errors
become `SpecError`s that say what was expected in the language's words, not Lark's token names;
an unbalanced bracket is reported where it opens.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import marshal
import math
import os
import re
import sys
import threading
import unicodedata
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from typing import NamedTuple

import lark
import lark.grammar
import lark.lexer
from lark import Lark, Token
from lark.indenter import DedentError, Indenter

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
class Component(Node):
    """(EXPR)[INDEX]: one component of a vector expression in parentheses."""
    value: Node
    index: Node


@dataclass(frozen=True)
class DataDecl(Node):
    name: Name
    dims: tuple          # () for a scalar datum (data mu : real)
    kind: Name
    of: Name | None = None   # index(C): the dim or const the values index


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
    items: tuple         # ((Name, Num or Name), ...): step 0.5, optimizer adagrad


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
class Sample(Node):
    """sample NAME[COUNT] in DIM ~ WEIGHTS (COUNT and WEIGHTS optional)."""
    name: Name
    count: Name | None
    dim: Name
    weights: Name | None


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

# Keywords of the language: never names (the checker rejects them where Lark's contextual lexer
# lets one through as a NAME, e.g. `param loss = 0`).
KEYWORDS = frozenset({"model", "dim", "const", "data", "param", "for", "in", "let", "loss", "reg",
                      "on", "predict", "train", "unscaled", "sum", "sample"})
KEYWORD_TOKENS = frozenset(k.upper() for k in KEYWORDS)

# Deepest nesting of statements and expressions accepted (a block, its statement and the
# expression count as levels); deeper input would only exhaust Python's stack in a later stage,
# every one of which walks expressions recursively.
MAX_DEPTH = 100
ASSOCIATIVE = ("+", "*")   # a chain of one of them with BALANCE_FROM operands is regrouped
BALANCE_FROM = 16

# Characters Python's str.splitlines() breaks lines at, other than '\n' (after '\r\n' and '\r'
# are normalised): the quoted line of an error would be the wrong one, so they are refused.
_ODD_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_BAD_CHARS = re.compile("[\x00-\x08\x0e-\x1b\x1f\x7f\ud800-\udfff]")


class _BadDedent(lark.exceptions.LarkError):
    """A dedent to a column that no enclosing block uses (raised with the statement's position)."""

    def __init__(self, line, column):
        super().__init__(f"bad dedent at {line}:{column}")
        self.line, self.column = line, column


class _GluedKeyword(lark.exceptions.LarkError):
    """A keyword immediately followed by more letters or digits (`fori`, `losss`, `params`).

    Where the parser state accepts a keyword but no name, Lark's contextual lexer matches the
    keyword as a prefix of the longer word and lexes the rest as a second token: `fori in x:`
    would silently read as `for i in x:`, and `losss f(z)` fail at `f`. A word is one token."""

    def __init__(self, keyword, rest):
        super().__init__(f"glued keyword at {keyword.line}:{keyword.column}")
        self.keyword, self.rest = keyword, rest


class _HogIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8

    def handle_NL(self, token):
        try:
            yield from super().handle_NL(token)
        except DedentError:
            raise _BadDedent(token.end_line, token.end_column) from None

    def process(self, stream):
        return super().process(_whole_words(stream))


def _whole_words(stream):
    """The tokens, refusing a keyword glued to the name or number after it (_GluedKeyword)."""
    before = None
    for token in stream:
        if before is not None and before.type in KEYWORD_TOKENS and \
                token.type in ("NAME", "NUMBER") and token.start_pos == before.end_pos:
            raise _GluedKeyword(before, token)
        before = token
        yield token


_PARSING = threading.Lock()


@functools.cache
def _parser() -> Lark:
    """The LALR parser, built once per process.

    Building its tables costs ~35 ms, so they are kept in the user's own build cache folder.
    Never Lark's `cache=True`: that unpickles a predictable file in the shared temp folder,
    which anyone could plant (code execution). Our copy is marshal data (plain dicts and
    lists, no code run on load), written atomically, and read only when the file and its
    folder belong to this user and nobody else can write them; else the parser is built."""
    grammar = resources.files("hogwild_dsl.grammar").joinpath("hog.lark").read_text()
    options = dict(parser="lalr", keep_all_tokens=True, maybe_placeholders=False)
    live = dict(postlex=_HogIndenter(), transformer=_ToSyntax())
    key = hashlib.sha256("\0".join([grammar, repr(sorted(options.items())), lark.__version__,
                                     sys.version]).encode()).hexdigest()[:24]
    path = _parser_cache_path(key)
    if path is not None and _private(path) and _private(path.parent):
        try:
            tables = marshal.loads(path.read_bytes())
            return Lark.__new__(Lark)._load(tables, **live)
        except Exception:     # truncated, foreign or stale: rebuild and rewrite it
            pass
    parser = Lark(grammar, **options, **live)
    if path is not None and _private(path.parent):
        try:
            data, memo = parser.memo_serialize([lark.lexer.TerminalDef, lark.grammar.Rule])
            data["options"] = {k: v for k, v in data["options"].items()
                               if k not in ("postlex", "transformer")}
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(marshal.dumps({"data": data, "memo": memo}))
            os.replace(tmp, path)
        except (OSError, ValueError):
            pass
    return parser


def _parser_cache_path(key: str):
    """Where the parser tables live: the build cache folder (None if there is none)."""
    from .build import cache_root     # late: build imports more than parsing needs
    try:
        return cache_root() / f"parser-{key}.marshal"
    except Exception:
        return None


def _private(path) -> bool:
    """True if `path` exists, is ours, and no other user can write it."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def parse(text: str) -> Module:
    """Parse .hog source text into a Module of syntax nodes; raise SpecError on bad syntax."""
    if not isinstance(text, str):
        raise SpecError(f"a spec must be text (str), not {type(text).__name__}",
                        hint="read the file first, or use hogwild_dsl.load(path)")
    source = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    _check_characters(source)
    _check_layout(source)
    if not source.endswith("\n"):
        source += "\n"
    with _PARSING:   # the indenter keeps its state on the one shared parser
        try:
            statements = _parser().parse(source)
        except _BadDedent as e:
            raise SpecError("this line is dedented to a column that no enclosing block uses",
                            e.line, e.column, source,
                            hint="indent every statement of a block by the same number of "
                                 "spaces, and top-level statements not at all") from None
        except _GluedKeyword as e:
            raise _glued_error(e, source) from None
        except lark.exceptions.UnexpectedToken as e:
            raise _token_error(e, source) from None
        except lark.exceptions.UnexpectedCharacters as e:
            raise _character_error(e, source) from None
        except lark.exceptions.UnexpectedEOF:
            line, column = _end_position(source)
            raise SpecError("the spec ends in the middle of a statement", line, column, source,
                            hint="finish the last statement") from None
    if _check_syntax(statements, source):
        statements = _balanced(statements)
    return Module(statements, source)


# ---------------------------------------------------------------- checks around Lark


def _check_characters(source: str) -> None:
    """Control characters (a NUL byte...) and lone surrogates are errors here, where they can
    be shown: passed on, they break the C build, the import or printing the spec."""
    bad = _BAD_CHARS.search(source)
    if bad:
        line, column = _position_of(source, bad.start())
        code = ord(bad.group())
        what = "a lone surrogate, not valid Unicode text" if 0xD800 <= code <= 0xDFFF \
            else "a NUL byte" if code == 0 else "a control character"
        raise SpecError(f"unexpected character U+{code:04X} ({what})", line, column,
                        _BAD_CHARS.sub("?", _ODD_BREAKS.sub(" ", source)),
                        hint="a spec is plain UTF-8 text")
    odd = _ODD_BREAKS.search(source)
    if odd:
        line, column = _position_of(source, odd.start())
        raise SpecError(f"unexpected character {odd.group()!r}", line, column,
                        _ODD_BREAKS.sub(" ", source), hint="lines end with a plain newline")


def _check_layout(source: str) -> None:
    """Tabs in indentation are an error with their position (LANGUAGE.md, lexical rules), and
    the first statement is not indented."""
    first = True
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        indent = line[:len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise SpecError("a tab in indentation", number, indent.index("\t") + 1, source,
                            hint="indent with spaces only")
        if first and indent:
            raise SpecError("unexpected indentation of the first statement", number,
                            len(indent) + 1, source,
                            hint="top-level statements start at column 1")
        first = False


def _chain(node: BinOp) -> list:
    """The operands of a chain of one operator, `a + b + c + ...` (parsed leaning left),
    from left to right; iterative."""
    op, operands = node.op, []
    while isinstance(node, BinOp) and node.op == op:
        operands.append(node.right)
        node = node.left
    operands.append(node)
    return operands[::-1]


def _balanced(node):
    """The syntax tree with every chain of BALANCE_FROM or more operands of `+` or `*`
    regrouped pairwise (((a + b) + (c + d)) + ...): a long flat sum nests log2(n) levels,
    not n (pairwise summation, no less accurate than left to right). Called after
    _check_syntax has bounded the depth it recurses to."""
    if isinstance(node, tuple):
        return tuple(_balanced(x) for x in node)
    if isinstance(node, BinOp) and node.op in ASSOCIATIVE:
        operands = _chain(node)
        if len(operands) >= BALANCE_FROM:
            return _pairwise(node, [_balanced(x) for x in operands])
    if isinstance(node, Node):
        return replace(node, **{f.name: _balanced(getattr(node, f.name))
                                for f in fields(node) if f.name not in ("line", "column")})
    return node


def _pairwise(root: BinOp, operands: list):
    if len(operands) == 1:
        return operands[0]
    half = len(operands) // 2
    return BinOp(root.line, root.column, root.op, _pairwise(root, operands[:half]),
                 _pairwise(root, operands[half:]))


def _check_syntax(statements: tuple, source: str) -> bool:
    """Refuse numbers that overflow to infinity and expressions nested deeper than MAX_DEPTH
    (iteratively, so that no input can exhaust the stack here), a long chain of `+` or `*`
    counted at the depth it has once regrouped pairwise. True if there is such a chain."""
    stack = [(node, 1) for node in statements]
    long_chain = False
    while stack:
        node, depth = stack.pop()
        if isinstance(node, BinOp) and node.op in ASSOCIATIVE:
            operands = _chain(node)
            if len(operands) >= BALANCE_FROM:
                long_chain = True
                levels = math.ceil(math.log2(len(operands)))
                stack.extend((x, depth + levels) for x in operands)
                continue
        if isinstance(node, Num):
            if not math.isfinite(node.value):
                raise SpecError(f"the number {node.text} is too large", node.line, node.column,
                                source, hint="numbers must be finite (below about 1.8e308)")
            continue
        if depth > MAX_DEPTH:
            raise SpecError(f"this expression is nested too deeply (more than {MAX_DEPTH} "
                            "levels)", node.line, node.column, source,
                            hint="split it into several 'let' lines")
        for child in children(node):
            stack.append((child, depth + 1))
    return long_chain


def children(node) -> tuple:
    """The nodes under a syntax node that can hold numbers or expressions (for walks that
    must not recurse)."""
    if isinstance(node, BinOp):
        return node.left, node.right
    if isinstance(node, Neg):
        return (node.operand,)
    if isinstance(node, (Index, Call)):
        return node.args
    if isinstance(node, Component):
        return node.value, node.index
    if isinstance(node, SumOver):
        return node.source, node.body
    if isinstance(node, (Let, Loss, Predict)):
        return (node.value,)
    if isinstance(node, Reg):
        return (node.lam, *node.targets)
    if isinstance(node, ForBlock):
        return node.body
    if isinstance(node, ConstDecl):
        return (node.value,)
    if isinstance(node, ParamDecl):
        return tuple(v for part in (node.constraint, node.init) if part for v in part.values)
    if isinstance(node, TrainDecl):
        return tuple(value for _, value in node.items if isinstance(value, Num))
    return ()


# ---------------------------------------------------------------- syntax error messages

# Lark's terminal names -> what a user of the language would call them.
_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "_NL": "the end of the line",
    "_INDENT": "an indented block", "_DEDENT": "the end of the block", "$END": "the end of the file",
}
_EXPR_START = {"NAME", "NUMBER", "LPAR", "MINUS", "SUM"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "CIRCUMFLEX"}
_BLOCK_WORDS = {"LET", "LOSS", "REG", "PREDICT", "SAMPLE"}
_TOP_WORDS = {"MODEL", "DIM", "CONST", "DATA", "PARAM", "FOR", "TRAIN"}


def _word(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    pattern = _parser().get_terminal(terminal).pattern
    return repr(pattern.value) if pattern.type == "str" else terminal.lower()


def _expected_words(expected: set[str]) -> str:
    words = set()
    rest = set(expected)
    if _EXPR_START <= rest:
        words.add("an expression")
        rest -= _EXPR_START
    if _OPERATORS - {"MINUS"} <= rest:
        words.add("an operator")
        rest -= _OPERATORS
    if {"NUMBER", "MINUS"} <= rest:   # a signed number
        words.add("a number")
        rest -= {"NUMBER", "MINUS"}
    words |= {_word(t) for t in rest}
    words = sorted(words)
    if not words:
        return "nothing more"
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _found(token) -> str:
    kind = token.type
    if kind in ("_NL", "$END", "_INDENT", "_DEDENT"):
        return {"_NL": "the end of the line", "$END": "the end of the file",
                "_INDENT": "an indented line", "_DEDENT": "the end of the block"}[kind]
    if kind == "NAME":
        return f"the name '{token}'"
    if kind == "NUMBER":
        return f"the number {token}"
    if str(token) in KEYWORDS:
        return f"the keyword '{token}'"
    return repr(str(token))


def _token_error(e: lark.exceptions.UnexpectedToken, source: str) -> SpecError:
    token = e.token
    try:
        expected = set(e.interactive_parser.accepts())
    except Exception:  # accepts() replays the parser; fall back to Lark's (coarser) set
        expected = set(e.expected)
    expected = {t for t in expected if not t.startswith("__IGNORE")}
    line, column = _token_position(token, source)
    bracket = _bracket_problem(source)
    if bracket is not None and (bracket.line, bracket.column) <= (line, column):
        return bracket

    def error(message, hint=None):
        return SpecError(message, line, column, source, hint=hint)

    kind, text = token.type, str(token)
    statement = source.split("\n")[line - 1].strip() if line <= source.count("\n") else ""
    habit = _other_language(token, source, statement)
    if habit is not None:
        return error(*habit)
    if kind == "_NL" and "COLON" in expected and statement.startswith("for"):
        return error("missing ':' at the end of the 'for' line",
                     "a 'for' line ends with ':' and its block is indented below it")
    if kind == "_NL" and "COLON" in expected and statement.startswith("data"):
        return error("missing ': KIND' after the dims of the data",
                     "e.g. data X[example, feature] : sparse")
    if kind == "_INDENT":
        if expected & _BLOCK_WORDS:
            return error("unexpected indentation inside the block",
                         "indent every statement of a block by the same number of spaces")
        return error("unexpected indentation",
                     "only the statements of a 'for' block are indented")
    if "_INDENT" in expected:   # point at the end of the 'for' line that has no block
        lines = source.split("\n")
        start = line if kind in ("_NL", "$END") else line - 1
        at = next((n for n in range(min(start, len(lines)), 0, -1)
                   if lines[n - 1].split("#", 1)[0].rstrip().endswith(":")), line)
        code = lines[at - 1].split("#", 1)[0].rstrip()
        return SpecError("the 'for' block has no indented statements", at, len(code) + 1,
                         source, hint="indent the statements of the block (with spaces) below "
                                      "the 'for' line")
    if statement.startswith("train") and {"NAME", "NUMBER"} <= expected:
        return error(f"expected a number or a word, found {_found(token)}",
                     _FORMS["train"])
    if kind in _BLOCK_WORDS and expected & _TOP_WORDS:
        return error(f"'{text}' outside a 'for' block",
                     "indent it under a 'for' line, e.g. 'for i in example:'")
    if kind == "FOR" and expected & _BLOCK_WORDS:
        return error("a 'for' block cannot be nested inside another",
                     "write each 'for' block at the top level, without indentation")
    if kind == "NUMBER" and "NAME" in expected and "NUMBER" not in expected:
        return error(f"expected a name, found the number {text}",
                     "names are letters, digits and '_', starting with a letter")
    before = source.split("\n")[line - 1][:column - 1] if line <= source.count("\n") + 1 else ""
    used = re.search(r"\bsum\s*$", before)
    if expected == {"LPAR"} and used:       # `sum` read as a value: a name a user chose
        return SpecError("'sum' is a keyword and cannot be used as a name", line,
                         used.start() + 1, source,
                         hint="sum is the reduction sum(v) or sum(j in X[i]: ...); rename "
                              "what you called 'sum'")
    if kind in KEYWORD_TOKENS and "NAME" in expected:
        return error(f"'{text}' is a keyword and cannot be used as a name",
                     "choose another name")
    if kind in ("NAME", "NUMBER", "LPAR", "SUM") and _OPERATORS - {"MINUS"} <= expected:
        return error(f"missing operator before {_found(token)}",
                     "put an operator (+ - * / ^) or ',' between two values")
    if kind in ("_NL", "$END") and _EXPR_START <= expected:
        return error(f"expected an expression, found {_found(token)}",
                     "the statement is incomplete: write the value that follows")
    hint = _syntax_hint(kind, expected, statement)
    if kind == "NAME":
        words = {k.lower() for k in expected & KEYWORD_TOKENS}
        close = _close_keyword(text, words)
        if close:
            hint = f"did you mean '{close}'? ({hint})"
    return error(f"expected {_expected_words(expected)}, found {_found(token)}", hint)


def _close_keyword(word: str, keywords) -> str | None:
    """The keyword `word` is a typo of, if one is close (case aside: `Loss`, `los`, `parm`)."""
    keywords = sorted(keywords)
    lower = word.lower()
    if lower in keywords:
        return lower
    close = difflib.get_close_matches(lower, keywords, n=1, cutoff=0.6)
    return close[0] if close else None


def _glued_error(e: _GluedKeyword, source: str) -> SpecError:
    """A keyword glued to the letters after it: the whole word is no keyword (_GluedKeyword)."""
    keyword, rest = e.keyword, e.rest
    word = str(keyword) + str(rest)
    line, column = keyword.line, keyword.column
    where = ("a statement starts with model, dim, const, data, param, for or train"
             if keyword.type in _TOP_WORDS else
             "a block holds let, sample, loss, reg and predict lines"
             if keyword.type in _BLOCK_WORDS else "a keyword is followed by a space")
    hint = f"did you mean '{keyword}'? ({where})"
    return SpecError(f"unknown word '{word}'", line, column, source, hint=hint)


def _other_language(token, source: str, statement: str) -> tuple[str, str] | None:
    """(message, hint) for a habit of Python or C at `token`, else None: the parser only
    knew that '*' or ':' was not expected there."""
    at = getattr(token, "start_pos", None)
    before = source[at - 1] if at else ""
    if token.type == "STAR" and before == "*":
        return "'**' is not an operator", "power is written '^': x ^ 2"
    if token.type == "SLASH" and "//" in (before + source[at:at + 2]):
        return "'//' does not start a comment", "'#' starts a comment"
    if token.type == "EQUAL" and re.match(r"(loss|predict)\b", statement):
        word = statement.split()[0]
        return (f"'{word}' takes its expression without '='",
                f"write '{word} EXPR'; 'let NAME = EXPR' names an intermediate")
    if token.type == "LSQB" and before == "]":
        return ("a second '[...]' after an index: the indices of one access go in one "
                "pair of brackets", _one_bracket(source, at))
    if token.type == "COLON" and before in "[, " and "[" in source[source.rfind("\n", 0, at):at]:
        return ("slices (':') are not part of the language",
                "X[i] is row i of X; X[i, j] is one value of it inside sum(j in X[i]: ...)")
    return None


def _one_bracket(source: str, at: int) -> str:
    """The hint for `A[i][j]` (numpy's chained indexing): `A[i, j]`, spelled from the source
    where both groups close on the line."""
    def group(start, step):      # the other end of the bracket group at `start`
        depth, k = 0, start
        while 0 <= k < len(source) and source[k] != "\n":
            depth += {"[": 1, "]": -1}.get(source[k], 0) * step
            if depth == 0:
                return k
            k += step
        return None
    first, last = group(at - 1, -1), group(at, 1)
    name = re.search(r"[A-Za-z_][A-Za-z0-9_]*$", source[:first]) if first else None
    if name is None or last is None:
        return "write A[i, j], not A[i][j]"
    inner = source[first + 1:at - 1] + ", " + source[at + 1:last]
    return f"write {name.group()}[{inner}], not {source[name.start():last + 1]}"


_FORMS = {
    "model": "the first statement is 'model NAME'",
    "dim": "e.g. dim example, feature",
    "const": "a const is a positive integer, e.g. const rank = 20",
    "data": "e.g. data X[example, feature] : sparse, data y[example] : index(class), or "
            "data mu : real",
    "sample": "e.g. sample j in item, sample j in item ~ popularity, or sample n[K] in item",
    "param": "e.g. param L[user, rank] ~ normal(0, 0.1), or param x[node, label] in simplex",
    "train": "each train key is followed by a number or a word, e.g. train step 0.5, decay 0.9, "
             "epochs 20, optimizer adagrad",
    "for": "a block starts with 'for i in DIM:' or 'for (u, v) in X:'",
    "let": "e.g. let z = dot(X[i], w)",
    "reg": "e.g. reg l2(1e-4) on w[X[i]], or reg l1(0.1) on L[u], R[v] unscaled",
}


def _syntax_hint(kind: str, expected: set[str], statement: str) -> str:
    first = re.match(r"[A-Za-z_]*", statement).group()
    if first in _FORMS:
        return _FORMS[first]
    if expected & {"RPAR", "RSQB"} and kind in ("_NL", "$END"):
        return "check that every '(' and '[' is closed"
    if expected & _TOP_WORDS:
        return "a statement starts with model, dim, const, data, param, for or train"
    if expected & _BLOCK_WORDS:
        return "a block holds let, sample, loss, reg and predict lines"
    return "see LANGUAGE.md for the form of each statement"


def _character_error(e: lark.exceptions.UnexpectedCharacters, source: str) -> SpecError:
    char = source[e.pos_in_stream] if e.pos_in_stream < len(source) else "?"
    hints = {
        ">": "the only comparison is the constraint '>= NUMBER' of a param",
        "<": "the only comparison is the constraint '>= NUMBER' of a param",
        "=": "'=' is for const, param and let; compare nothing in a loss",
        '"': "the language has no strings",
        "'": "the language has no strings",
        ".": "a number is written 0.5 or .5; names have no '.'",
        "\\": "a '\\' continues a statement on the next line only as the last character "
              "of its line (inside '(' or '[' no '\\' is needed)",
    }
    hint = hints.get(char, "names are letters, digits and '_'; operators are + - * / ^")
    what = repr(char)
    if not char.isascii():         # pasted text: a no-break space, a typographic minus...
        what = f"U+{ord(char):04X} ({unicodedata.name(char, 'unnamed').lower()})"
        if unicodedata.category(char) == "Zs":
            hint = "use a plain space (this one often comes with text pasted from a page)"
        elif unicodedata.category(char) == "Pd" or char == "\u2212":
            hint = "use a plain '-' (this one often comes with text pasted from a page)"
        elif char.isalpha():
            hint = "names are ASCII letters, digits and '_' ([A-Za-z_][A-Za-z0-9_]*)"
    return SpecError(f"unexpected character {what}", e.line, e.column, source, hint=hint)


def _token_position(token, source: str) -> tuple[int, int]:
    if token.type == "$END":
        return _end_position(source)
    if token.type in ("_INDENT", "_DEDENT"):   # borrowed from the newline: the line it starts
        line, column = token.end_line, token.end_column
    else:
        line, column = token.line, token.column
    if line is None or line > source.count("\n"):
        return _end_position(source)
    if token.type == "_NL":   # just after the last character of code on the line
        code = source.split("\n")[line - 1][:column - 1].split("#", 1)[0].rstrip()
        column = len(code) + 1
    return line, column


def _end_position(source: str) -> tuple[int, int]:
    lines = source.rstrip("\n").split("\n")
    return len(lines), len(lines[-1]) + 1


def _position_of(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


_BRACKETS = re.compile(r"#[^\n]*|[()\[\]]")
_PAIRS = {")": "(", "]": "["}


def _bracket_problem(source: str) -> SpecError | None:
    """The first unbalanced '(' / '[' of the source (comments skipped), as a SpecError."""
    stack = []
    for m in _BRACKETS.finditer(source):
        char = m.group()
        if char.startswith("#"):
            continue
        if char in "([":
            stack.append((char, m.start()))
            continue
        line, column = _position_of(source, m.start())
        if not stack:
            return SpecError(f"unmatched {char!r}", line, column, source,
                             hint=f"remove it, or open it with {_PAIRS[char]!r}")
        opener, offset = stack.pop()
        if opener != _PAIRS[char]:
            oline, ocolumn = _position_of(source, offset)
            return SpecError(f"{char!r} closes the {opener!r} of line {oline}, column {ocolumn}",
                             line, column, source,
                             hint="close each '(' with ')' and each '[' with ']'")
    if stack:
        opener, offset = stack[-1]
        line, column = _position_of(source, offset)
        closer = ")" if opener == "(" else "]"
        return SpecError(f"unclosed {opener!r}", line, column, source,
                         hint=f"close it with {closer!r}")
    return None


def _name(tok: Token) -> Name:
    return Name(tok.line, tok.column, str(tok))


def _num(tok: Token) -> Num:
    return Num(tok.line, tok.column, float(tok), str(tok))


class _Pos(NamedTuple):
    line: int
    column: int


_KEPT_TOKENS = {"NAME", "NUMBER", "SUM", "UNSCALED"}


def _rule(method):
    """Adapt `method(self, pos, items)` to Lark's in-parser callback `f(children)`: pos is where
    the rule's text starts (its first token, kept for that, or the '(' before its first
    operand), items its children without keywords, punctuation and layout tokens."""
    def callback(self, children):
        first = children[0] if children else None
        while isinstance(first, tuple):
            first = first[0]
        pos = _Pos(1, 1) if first is None else \
            getattr(first, "_paren", None) or _Pos(first.line, first.column)
        items = [c for c in children if not isinstance(c, Token) or c.type in _KEPT_TOKENS]
        return method(self, pos, items)
    callback.__name__ = method.__name__
    return callback


class _ToSyntax:
    """Lark's rules -> syntax dataclasses, one method per rule, run by the LALR parser as it
    reduces (no intermediate parse tree)."""

    @_rule
    def start(self, meta, items):
        return tuple(items)

    def atom(self, children):   # "(" expr ")": the expression, remembering where '(' is
        inner = children[1]
        object.__setattr__(inner, "_paren", _Pos(children[0].line, children[0].column))
        return inner

    @_rule
    def model_decl(self, meta, items):
        return ModelDecl(meta.line, meta.column, _name(items[0]))

    @_rule
    def dim_decl(self, meta, items):
        return DimDecl(meta.line, meta.column, tuple(_name(t) for t in items))

    @_rule
    def const_decl(self, meta, items):
        return ConstDecl(meta.line, meta.column, _name(items[0]), items[1])

    @_rule
    def data_decl(self, meta, items):
        kind, of = items[-1]
        return DataDecl(meta.line, meta.column, _name(items[0]),
                        tuple(_name(t) for t in items[1:-1]), kind, of)

    @_rule
    def data_kind(self, meta, items):   # sparse | index(class)
        return _name(items[0]), (_name(items[1]) if len(items) > 1 else None)

    @_rule
    def shape(self, meta, items):
        return tuple(_name(t) for t in items)

    @_rule
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

    @_rule
    def c_named(self, meta, items):
        return Constraint(meta.line, meta.column, "named", _name(items[0]), ())

    @_rule
    def c_call(self, meta, items):
        return Constraint(meta.line, meta.column, "call", _name(items[0]), (items[1],))

    @_rule
    def c_box(self, meta, items):
        return Constraint(meta.line, meta.column, "box", None, tuple(items))

    @_rule
    def c_lower(self, meta, items):
        return Constraint(meta.line, meta.column, "lower", None, tuple(items))

    @_rule
    def init_value(self, meta, items):
        return Init(meta.line, meta.column, "value", None, tuple(items))

    @_rule
    def init_named(self, meta, items):
        return Init(meta.line, meta.column, "named", _name(items[0]), ())

    @_rule
    def init_random(self, meta, items):
        return Init(meta.line, meta.column, "random", _name(items[0]), tuple(items[1:]))

    @_rule
    def pos(self, meta, items):
        return _num(items[0])

    @_rule
    def negnum(self, meta, items):   # positioned at the '-'
        return Num(meta.line, meta.column, -float(items[0]), "-" + str(items[0]))

    @_rule
    def train_decl(self, meta, items):
        return TrainDecl(meta.line, meta.column, tuple(items))

    @_rule
    def train_item(self, meta, items):
        return (_name(items[0]), items[1])

    @_rule
    def train_word(self, meta, items):
        return (_name(items[0]), _name(items[1]))

    @_rule
    def for_block(self, meta, items):
        return ForBlock(meta.line, meta.column, items[0], _name(items[1]), tuple(items[2:]))

    @_rule
    def one_var(self, meta, items):
        return (_name(items[0]),)

    @_rule
    def two_vars(self, meta, items):
        return (_name(items[0]), _name(items[1]))

    @_rule
    def many_vars(self, meta, items):   # refused by the checker, with the form that exists
        return tuple(_name(t) for t in items)

    @_rule
    def let_stmt(self, meta, items):
        return Let(meta.line, meta.column, _name(items[0]), items[1])

    @_rule
    def loss_stmt(self, meta, items):
        return Loss(meta.line, meta.column, items[0])

    @_rule
    def reg_stmt(self, meta, items):
        unscaled = isinstance(items[-1], Token) and items[-1].type == "UNSCALED"
        targets = items[2:-1] if unscaled else items[2:]
        return Reg(meta.line, meta.column, _name(items[0]), items[1], tuple(targets), unscaled)

    @_rule
    def predict_stmt(self, meta, items):
        return Predict(meta.line, meta.column, items[0])

    def sample_stmt(self, children):   # raw tokens: '[' and '~' tell the optional parts apart
        tokens = [c for c in children if isinstance(c, Token)]
        kinds = [t.type for t in tokens]
        names = [_name(t) for t in tokens if t.type == "NAME"]
        count = names[1] if "LSQB" in kinds else None
        weights = names[-1] if "TILDE" in kinds else None
        dim = names[2] if count else names[1]
        return Sample(tokens[0].line, tokens[0].column, names[0], count, dim, weights)

    def _binop(self, op, meta, items):
        return BinOp(meta.line, meta.column, op, items[0], items[1])

    @_rule
    def add(self, meta, items):
        return self._binop("+", meta, items)

    @_rule
    def sub(self, meta, items):
        return self._binop("-", meta, items)

    @_rule
    def mul(self, meta, items):
        return self._binop("*", meta, items)

    @_rule
    def div(self, meta, items):
        return self._binop("/", meta, items)

    @_rule
    def pow(self, meta, items):
        return self._binop("^", meta, items)

    @_rule
    def neg(self, meta, items):
        return Neg(meta.line, meta.column, items[0])

    @_rule
    def number(self, meta, items):
        return _num(items[0])

    @_rule
    def name(self, meta, items):
        return _name(items[0])

    def paren_index(self, children):   # (EXPR)[INDEX], positioned at the '('
        items = [c for c in children if not isinstance(c, Token) or c.type in _KEPT_TOKENS]
        return Component(children[0].line, children[0].column, items[0], items[1])

    @_rule
    def index(self, meta, items):
        return Index(meta.line, meta.column, _name(items[0]), tuple(items[1:]))

    @_rule
    def call(self, meta, items):
        args = tuple(a for a in items[1:] if a is not None)
        return Call(meta.line, meta.column, str(items[0]), args)

    @_rule
    def call_index(self, meta, items):     # softmax(z)[y[i]]: a component of a call's vector
        args = tuple(a for a in items[1:-1] if a is not None)
        return Component(meta.line, meta.column, Call(meta.line, meta.column, str(items[0]),
                                                      args), items[-1])

    @_rule
    def sum_over(self, meta, items):
        return SumOver(meta.line, meta.column, _name(items[1]), items[2], items[3])
