"""Property tests of the front end: whatever text comes in, `check` either returns the IR or
raises a SpecError that points into the text — never another exception, never a hang.

(a) the shipped specs mutated (characters, lines, tokens deleted, duplicated, swapped or
replaced; tokens of the language inserted; indentation changed); (b) random streams of the
language's tokens. Every example must finish within the per-example deadline.
"""
import os
import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hogwild_dsl.check import check
from hogwild_dsl.errors import SpecError

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.hog"))
TEXTS = [p.read_text() for p in SPECS]

# Examples per test; HOG_FUZZ_EXAMPLES=5000 for a long hunt.
EXAMPLES = int(os.environ.get("HOG_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

KEYWORDS = ["model", "dim", "const", "data", "param", "for", "in", "let", "loss", "reg", "on",
            "predict", "train", "unscaled", "sum"]
WORDS = ["sparse", "dense", "real", "sign", "binary", "simplex", "ball", "uniform", "normal",
         "l1", "l2", "step", "decay", "epochs", "seed", "threads", "dot", "norm1", "norm2",
         "sqnorm", "hinge", "sqhinge", "logistic", "huber", "max", "min", "abs", "exp", "log",
         "log1p", "sqrt", "sigmoid", "softplus", "relu", "argmax", "example", "feature", "user",
         "item", "rank", "node", "label", "X", "y", "w", "b", "L", "R", "r", "c", "x", "V", "k",
         "i", "j", "u", "v", "n", "f", "_z", "yhat", "pair"]
NUMBERS = ["0", "1", "2", "0.5", "1e-4", "2.5E+3", "-1", "20", "1e999", ".5", "3."]
PUNCT = ["(", ")", "[", "]", ",", ":", "=", "~", ">=", "+", "-", "*", "/", "^", "#", "\\",
         ">", "!", "$", "\t", "\n", "\n    ", "\n  ", "\n        ", "\r", "\x0c", "é"]
VOCAB = KEYWORDS + WORDS + NUMBERS + PUNCT
TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][+-]?\d+)?|>=|.", re.S)


def assert_only_spec_errors(text, consts=None):
    try:
        check(text, consts)
    except SpecError as e:
        assert e.line is not None and e.column is not None, e
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        assert 1 <= e.line <= len(lines) + 1, (e.line, len(lines))
        assert e.column >= 1
        assert "^" in str(e) and e.hint, str(e)


# ---------------------------------------------------------------- (a) mutated specs


def _mutate(text: str, op: str, a: int, b: int, token: str) -> str:
    if op in ("del_char", "dup_char", "swap_char", "ins_token_char"):
        units, sep = list(text), ""
    elif op in ("del_line", "dup_line", "swap_line", "indent_line", "dedent_line", "tab_line"):
        units, sep = text.split("\n"), "\n"
    else:
        units, sep = TOKEN.findall(text), ""
    if not units:
        return token
    i, j = a % len(units), b % len(units)
    if op.startswith("del"):
        del units[i]
    elif op.startswith("dup"):
        units.insert(i, units[i])
    elif op.startswith("swap"):
        units[i], units[j] = units[j], units[i]
    elif op.startswith("ins"):
        units.insert(i, token if op == "ins_token_char" else " " + token + " ")
    elif op == "replace_token":
        units[i] = token
    elif op == "indent_line":
        units[i] = " " * (1 + j % 8) + units[i]
    elif op == "dedent_line":
        units[i] = units[i][1 + j % 4:] if units[i].startswith(" ") else units[i]
    elif op == "tab_line":
        units[i] = "\t" + units[i]
    return sep.join(units)


OPS = ["del_char", "dup_char", "swap_char", "ins_token_char", "del_line", "dup_line",
       "swap_line", "indent_line", "dedent_line", "tab_line", "del_token", "dup_token",
       "swap_token", "ins_token", "replace_token"]
mutation = st.tuples(st.sampled_from(OPS), st.integers(0, 10_000), st.integers(0, 10_000),
                     st.sampled_from(VOCAB))


@FUZZ
@given(st.sampled_from(TEXTS), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_specs_raise_only_spec_errors(text, mutations):
    for op, a, b, token in mutations:
        text = _mutate(text, op, a, b, token)
    assert_only_spec_errors(text)


@FUZZ
@given(st.sampled_from(TEXTS),
       st.dictionaries(st.sampled_from(["rank", "k", "K", "", "x"]),
                       st.one_of(st.integers(-3, 10**12), st.floats(allow_nan=True),
                                 st.text(max_size=4), st.booleans(), st.none()), max_size=2))
def test_const_overrides_raise_only_spec_errors(text, consts):
    assert_only_spec_errors(text, consts)


# ---------------------------------------------------------------- (b) random token streams

LINE_STARTS = ["model", "dim", "const", "data", "param", "for", "train", "    let", "    loss",
               "    reg", "    predict"]
line = st.tuples(st.sampled_from(LINE_STARTS),
                 st.lists(st.sampled_from(VOCAB), max_size=12)).map(
    lambda t: " ".join([t[0], *t[1]]))


@FUZZ
@given(st.lists(st.sampled_from(VOCAB), max_size=60), st.sampled_from(["", " "]))
def test_token_streams_raise_only_spec_errors(tokens, sep):
    assert_only_spec_errors(sep.join(tokens))


@FUZZ
@given(st.lists(line, max_size=14))
def test_statement_shaped_streams_raise_only_spec_errors(lines):
    assert_only_spec_errors("model m\n" + "\n".join(lines) + "\n")


@FUZZ
@given(st.sampled_from(TEXTS), st.integers(0, 10_000), st.lists(line, min_size=1, max_size=3))
def test_specs_with_inserted_statements_raise_only_spec_errors(text, at, lines):
    rows = text.split("\n")
    at %= len(rows)
    assert_only_spec_errors("\n".join(rows[:at] + lines + rows[at:]))


# ---------------------------------------------------------------- (c) random well-formed specs
# Syntactically valid specs over a small pool of names, so that the checker (not the parser)
# meets every combination of names, shapes and functions.

LEAVES = ["w", "b", "V", "X", "y", "c", "r", "k", "e", "z", "m", "i", "j", "u", "v"]
INDICES = ["i", "j", "u", "v", "n", "q", "k"]
FUNCS = ["dot", "sum", "norm1", "norm2", "sqnorm", "hinge", "logistic", "huber", "max", "abs",
         "sign", "argmax", "exp", "nope", "w"]

expr = st.recursive(
    st.one_of(st.sampled_from(LEAVES), st.sampled_from(["0", "1", "0.5", "2"]),
              st.tuples(st.sampled_from(LEAVES),
                        st.lists(st.sampled_from(INDICES), min_size=1, max_size=3))
              .map(lambda t: f"{t[0]}[{', '.join(t[1])}]")),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^"]), inner)
        .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda a: f"-{a}"),
        st.tuples(st.sampled_from(FUNCS), st.lists(inner, min_size=0, max_size=3))
        .map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(st.sampled_from(INDICES),
                  st.sampled_from(["X[i]", "X[u]", "r[u]", "k", "e", "f", "w", "y[i]"]), inner)
        .map(lambda t: f"sum({t[0]} in {t[1]}: {t[2]})"),
    ), max_leaves=8)

FRESH = ["p", "q", "s", "t", "e", "w", "_a", "in"]
DIMS = ["e", "f", "k", "g", "h"]
decl = st.one_of(
    st.lists(st.sampled_from(FRESH + DIMS), min_size=1, max_size=2)
    .map(lambda n: "dim " + ", ".join(n)),
    st.tuples(st.sampled_from(FRESH), st.sampled_from(["1", "3", "0", "2.5"]))
    .map(lambda t: f"const {t[0]} = {t[1]}"),
    st.tuples(st.sampled_from(FRESH), st.lists(st.sampled_from(DIMS), min_size=1, max_size=3),
              st.sampled_from(["sparse", "dense", "real", "sign", "binary", "odd"]))
    .map(lambda t: f"data {t[0]}[{', '.join(t[1])}] : {t[2]}"),
    st.tuples(st.sampled_from(FRESH), st.lists(st.sampled_from(DIMS), max_size=3),
              st.sampled_from(["", " in simplex", " >= 0", " in [0, 1]", " in ball(1)"]),
              st.sampled_from(["", " = 0", " = uniform", " ~ normal(0, 1)", " ~ uniform(1, 0)"]))
    .map(lambda t: f"param {t[0]}{'[' + ', '.join(t[1]) + ']' if t[1] else ''}{t[2]}{t[3]}"),
)
stmt = st.one_of(
    expr.map(lambda x: "loss " + x),
    expr.map(lambda x: "predict " + x),
    st.tuples(st.sampled_from(["z", "m", "w", "i"]), expr).map(lambda t: f"let {t[0]} = {t[1]}"),
    st.tuples(st.sampled_from(["l1", "l2", "l3"]), st.lists(expr, min_size=1, max_size=2),
              st.sampled_from(["", " unscaled"]))
    .map(lambda t: f"reg {t[0]}(0.1) on {', '.join(t[1])}{t[2]}"),
)
HEADERS = ["i in e", "i in e", "(u, v) in r", "(u, v) in X", "(u, v) in r", "n in f", "i in k",
           "(u, u) in r", "i in X", "(u, v) in c"]
block = st.tuples(st.sampled_from(HEADERS), st.lists(stmt, min_size=1, max_size=4)).map(
    lambda t: f"for {t[0]}:\n" + "".join(f"    {s}\n" for s in t[1]))

BASE = "model m\ndim e, f\nconst k = 3\ndata X[e, f] : sparse\ndata y[e] : sign\n" \
       "data r[e, e] : sparse\ndata c[e, k] : dense\nparam w[f] = 0\nparam b = 0\n" \
       "param V[f, k] ~ normal(0, 0.1)\n"


@FUZZ
@given(st.lists(decl, max_size=3), st.lists(block, min_size=1, max_size=3))
def test_well_formed_specs_raise_only_spec_errors(decls, blocks):
    assert_only_spec_errors(BASE + "".join(d + "\n" for d in decls) + "".join(blocks))
