"""Safe expressions over named columns: ``end_type == "dropout"``, ``finished_course and ruptures >= 1``.

The facts of analysis/targets.toml and the user metrics of sweep specs ([metrics] in
experiments/*.toml) select clients and define variables with short expressions over the columns of
clients.csv. They come from files users share, so they are never handed to Python or
to pandas (whose ``eval`` resolves ``@name`` and attribute chains up to ``os.system``). Each text is
parsed with :mod:`ast` and checked against a whitelist before anything is evaluated:

- column names (the keys of the mapping given to :func:`evaluate`), numbers, text in quotes,
  ``True`` and ``False``;
- arithmetic ``+ - * / // % **``, comparisons ``== != < <= > >=`` (chains too), ``in [..]`` and
  ``not in [..]`` with a list of numbers or texts;
- ``and``, ``or``, ``not`` and their symbols ``&``, ``|``, ``~``, always element by element on
  truth values (pandas' ``query`` reads them so too; on integer columns these are logical, not bitwise);
- the functions of :data:`FUNCTIONS`, called by name.

Anything else (attribute access, indexing, other calls, keywords, lambdas, comprehensions, f-strings,
``@`` names) is refused with :class:`ExpressionError` naming what was found, so no attribute or call
reaches Python. Evaluation works on numpy arrays directly, element by element, with numpy's rules:
division by zero gives inf or NaN, as pandas gives it. The same module serves targets, facts and the
user metrics of sweeps (whose workers import the engine only, so it lives in sim/)::

    >>> import numpy as np
    >>> evaluate("a / b >= 0.5", {"a": np.array([1, 2]), "b": np.array([4, 2])}).tolist()
    [False, True]
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import libm

MAX_LENGTH = 10_000  # characters; the facts' longest is under 50
MAX_DEPTH = 64  # nesting of operations; deep enough for any hand-written expression


def _power(a, b):
    """``a ** b``: integers as numpy computes them, floats by the C library (sim/libm.py)."""
    return libm.power(a, b) if np.result_type(a, b).kind == "f" else np.power(a, b)


def _where(condition, a, b):
    return np.where(np.asarray(condition, dtype=bool), a, b)


# name -> (function, number of arguments)
FUNCTIONS: dict[str, tuple[Any, int]] = {
    "abs": (np.abs, 1),
    "sqrt": (np.sqrt, 1),
    # The C library's, not numpy's: numpy's depend on the processor (sim/libm.py), and the user
    # metrics of a sweep are computed on its workers.
    "exp": (libm.exp, 1),
    "log": (libm.log, 1),
    "log10": (libm.log10, 1),
    "log1p": (libm.log1p, 1),
    "floor": (np.floor, 1),
    "ceil": (np.ceil, 1),
    "isnan": (np.isnan, 1),
    "isfinite": (np.isfinite, 1),
    "minimum": (np.minimum, 2),
    "maximum": (np.maximum, 2),
    "clip": (np.clip, 3),
    "where": (_where, 3),
}
ARITHMETIC = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.FloorDiv: np.floor_divide,
    ast.Mod: np.mod,
    ast.Pow: _power,
    ast.BitAnd: np.logical_and,
    ast.BitOr: np.logical_or,
}
COMPARISONS = {
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
}
ALLOWED = (
    "column names, numbers, text in quotes, True and False; + - * / // % **; == != < <= > >=; "
    "in [...] and not in [...]; and, or, not (or &, |, ~); and the functions " + ", ".join(FUNCTIONS)
)
# What a refused node is, in a reader's words.
REFUSED = {
    ast.Attribute: "attribute access (a.b)",
    ast.Subscript: "indexing (a[...])",
    ast.Call: "a call",
    ast.Lambda: "a lambda",
    ast.IfExp: "an if-else expression (use where(condition, a, b))",
    ast.NamedExpr: "an assignment (:=)",
    ast.JoinedStr: "an f-string",
    ast.Dict: "a dictionary",
    ast.Set: "a set",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Starred: "unpacking (*)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "a slice",
}


class ExpressionError(ValueError):
    """An expression that is not allowed or cannot be evaluated; the message says what and what is allowed."""


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression.

    Attributes:
        text: the expression as written.
        names: the column names it reads.
    """

    text: str
    names: frozenset[str]
    _tree: ast.expr

    def __call__(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Evaluate on ``columns``; see :func:`evaluate`."""
        return evaluate(self, columns)


def shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut short when long."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def parse(text: str, columns: Iterable[str] | None = None) -> Expression:
    """Parse and check ``text``; with ``columns``, also that it names only those columns.

    Raises:
        ExpressionError: not text, empty, too long, not a valid expression, an element outside the
            whitelist, or (with ``columns``) an unknown column name.
    """
    if not isinstance(text, str):
        raise ExpressionError(f"{text!r} is not an expression: write it as text in quotes.")
    if not text.strip():
        raise ExpressionError("the expression is empty.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is {len(text):,} characters long; at most {MAX_LENGTH:,} are allowed.")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise ExpressionError(f"{shown(text)} is not a valid expression ({err.msg}); it may use {ALLOWED}.") from None
    except (ValueError, RecursionError, MemoryError):  # null bytes; nesting beyond the parser's limits
        raise ExpressionError(f"{shown(text)} cannot be parsed: it may use {ALLOWED}.") from None
    names = _check(tree, text)
    if columns is not None:
        known = set(columns)
        unknown = sorted(names - known)
        if unknown:
            listed = ", ".join(sorted(known))
            raise ExpressionError(
                f"{shown(text)} names {', '.join(map(shown, unknown))}, which is not a column; "
                f"the columns are: {listed}."
            )
    return Expression(text, frozenset(names), tree)


def _check(tree: ast.expr, text: str) -> set[str]:
    """Walk the tree (without recursion) and refuse anything outside the whitelist; return the names."""
    names: set[str] = set()
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(f"{shown(text)} is nested more than {MAX_DEPTH} levels deep; simplify it.")
        children: list[ast.AST] = []
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise ExpressionError(f"{shown(text)}: {node.id} is a function; call it as {node.id}(...).")
            names.add(node.id)
        elif isinstance(node, ast.Constant):
            _check_constant(node.value, text)
        elif isinstance(node, ast.BinOp) and type(node.op) in ARITHMETIC:
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and isinstance(side.value, str):
                    raise ExpressionError(f"{shown(text)}: text in quotes can only be compared (==, !=, in).")
            children = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not | ast.Invert):
            children = [node.operand]
        elif isinstance(node, ast.BoolOp):
            children = list(node.values)
        elif isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn):
                    if not isinstance(right, ast.List | ast.Tuple):
                        raise ExpressionError(f'{shown(text)}: \'in\' needs a list, e.g. end_type in ["a", "b"].')
                    for item in right.elts:
                        _list_item(item, text)
                elif type(op) not in COMPARISONS:
                    raise ExpressionError(f"{shown(text)}: 'is' is not allowed; compare with == or !=.")
                else:
                    children.append(right)
            children.append(node.left)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS:
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(f"{shown(text)}: give {node.func.id}'s arguments by position, without names.")
            arity = FUNCTIONS[node.func.id][1]
            if len(node.args) != arity:
                raise ExpressionError(
                    f"{shown(text)}: {node.func.id} takes {arity} argument{'s' * (arity > 1)}, not {len(node.args)}."
                )
            children = list(node.args)
        else:
            raise ExpressionError(f"{shown(text)}: {_describe(node)} is not allowed; expressions may use {ALLOWED}.")
        stack += [(child, depth + 1) for child in children]
    return names


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)[:40]
        return f"calling {called} (only {', '.join(FUNCTIONS)} can be called)"
    if isinstance(node, ast.List | ast.Tuple):
        return "a list outside 'in [...]'"
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        return f"the operator {type(node.op).__name__}"
    return REFUSED.get(type(node), type(node).__name__)


def _check_constant(value: Any, text: str) -> None:
    if isinstance(value, bool | str) or (isinstance(value, int | float) and not isinstance(value, complex)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise ExpressionError(f"{shown(text)}: the number {str(value)[:20]}... is too large.")
        return
    raise ExpressionError(f"{shown(text)}: the constant {shown(repr(value), 30)} is not a number, text or True/False.")


def _list_item(item: ast.AST, text: str) -> None:
    """An element of ``in [...]``: a number (possibly negative) or a text."""
    if isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub | ast.UAdd):
        item = item.operand
        if not (isinstance(item, ast.Constant) and isinstance(item.value, int | float)):
            raise ExpressionError(f"{shown(text)}: a list after 'in' holds numbers and texts only.")
    if not isinstance(item, ast.Constant):
        raise ExpressionError(f"{shown(text)}: a list after 'in' holds numbers and texts only.")
    _check_constant(item.value, text)


def evaluate(expression: str | Expression, columns: Mapping[str, Any]) -> np.ndarray:
    """The value of ``expression`` for every element of ``columns``.

    Args:
        expression: the text, or an :class:`Expression` from :func:`parse`.
        columns: column name -> numpy array (or anything ``np.asarray`` takes), all the same shape.

    Returns:
        An array of that shape (a constant expression is broadcast to it).

    Raises:
        ExpressionError: the text is not allowed, names a column not in ``columns``, or its values
            cannot be combined (e.g. ordering text against numbers).
    """
    if not isinstance(expression, Expression):
        expression = parse(expression, columns)
    missing = sorted(expression.names - set(columns))
    if missing:
        raise ExpressionError(
            f"{shown(expression.text)} names {', '.join(map(shown, missing))}, which is not a column; "
            f"the columns are: {', '.join(sorted(columns))}."
        )
    arrays = {name: np.asarray(columns[name]) for name in expression.names}
    try:
        with np.errstate(all="ignore"):
            value = _eval(expression._tree, arrays)
    except (TypeError, ValueError, OverflowError, MemoryError) as err:
        raise ExpressionError(f"{shown(expression.text)} cannot be evaluated on these columns ({err}).") from None
    shape = _shape(arrays, columns)
    value = np.asarray(value)
    return np.broadcast_to(value, shape).copy() if value.shape != shape and value.ndim == 0 else value


def _shape(arrays: dict[str, np.ndarray], columns: Mapping[str, Any]) -> tuple[int, ...]:
    """The shape of the columns: of those read, else of the first one (a DataFrame's: its rows)."""
    if arrays:
        return next(iter(arrays.values())).shape
    if hasattr(columns, "columns") and hasattr(columns, "index"):  # a pandas DataFrame
        return (len(columns),)
    return next((np.shape(columns[name]) for name in columns), ())


def _eval(node: ast.expr, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(node, ast.Name):
        return arrays[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, arrays), _eval(node.right, arrays)
        if np.ndim(left) == 0 and np.ndim(right) == 0:
            left = np.float64(left)  # numbers alone: numpy's, so 9 ** 9 ** 9 is inf at once, not a huge integer
        return ARITHMETIC[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, arrays)
        if isinstance(node.op, ast.Not | ast.Invert):
            return np.logical_not(operand)
        return np.negative(operand) if isinstance(node.op, ast.USub) else np.positive(operand)
    if isinstance(node, ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        values = [_eval(v, arrays) for v in node.values]
        result = combine(values[0], values[1])
        for value in values[2:]:
            result = combine(result, value)
        return result
    if isinstance(node, ast.Compare):
        left, result = _eval(node.left, arrays), True
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                items = [ast.literal_eval(item) for item in right_node.elts]
                hit = np.zeros(np.shape(left), dtype=bool)
                for item in items:
                    hit |= np.asarray(left == item, dtype=bool)
                part, right = (hit if isinstance(op, ast.In) else ~hit), left
            else:
                right = _eval(right_node, arrays)
                part = COMPARISONS[type(op)](left, right)
            result = np.logical_and(result, part)
            left = right
        return result
    if isinstance(node, ast.Call):
        function = FUNCTIONS[node.func.id][0]
        return function(*(_eval(a, arrays) for a in node.args))
    raise ExpressionError(f"{type(node).__name__} is not allowed")  # unreachable after _check
