"""Column expressions for ``Dataset.filter(expr=...)`` (Ray's ``ray.data.expressions``):
``col("a") > 1``, ``(col("x") * 2 + lit(1)) <= col("y")``, ``col("s").is_in(["a", "b"])``,
``~col("a").is_null()``, combined with ``&``, ``|``, ``~``. A string in Python syntax works too:
``ds.filter(expr="a > 1 and year == '2020'")``. Expressions run vectorised with pyarrow on
whole blocks, and a filter right after ``read_parquet`` is pushed into the read."""

import ast
import operator

import numpy as np

from . import block as B
from .._extras import require


class Expr:
    """A column expression; ``to_pyarrow()`` gives the pyarrow compute expression."""

    def __init__(self, build, columns, text):
        self._build = build
        self.columns = set(columns)
        self.text = text

    def to_pyarrow(self):
        return self._build()

    def __repr__(self):
        return self.text

    def _bin(self, other, fn, sym, rev=False):
        o = other if isinstance(other, Expr) else lit(other)
        a, b = (o, self) if rev else (self, o)
        return Expr(lambda: fn(a.to_pyarrow(), b.to_pyarrow()), a.columns | b.columns, f"({a.text} {sym} {b.text})")

    def __add__(self, o): return self._bin(o, operator.add, "+")
    def __radd__(self, o): return self._bin(o, operator.add, "+", True)
    def __sub__(self, o): return self._bin(o, operator.sub, "-")
    def __rsub__(self, o): return self._bin(o, operator.sub, "-", True)
    def __mul__(self, o): return self._bin(o, operator.mul, "*")
    def __rmul__(self, o): return self._bin(o, operator.mul, "*", True)
    def __truediv__(self, o): return self._bin(o, operator.truediv, "/")
    def __rtruediv__(self, o): return self._bin(o, operator.truediv, "/", True)
    def __gt__(self, o): return self._bin(o, operator.gt, ">")
    def __ge__(self, o): return self._bin(o, operator.ge, ">=")
    def __lt__(self, o): return self._bin(o, operator.lt, "<")
    def __le__(self, o): return self._bin(o, operator.le, "<=")
    def __eq__(self, o): return self._bin(o, operator.eq, "==")  # noqa: D105
    def __ne__(self, o): return self._bin(o, operator.ne, "!=")
    def __and__(self, o): return self._bin(o, operator.and_, "&")
    def __or__(self, o): return self._bin(o, operator.or_, "|")

    def __invert__(self):
        return Expr(lambda: ~self.to_pyarrow(), self.columns, f"~{self.text}")

    def __hash__(self):
        return hash(self.text)

    def is_null(self):
        return Expr(lambda: self.to_pyarrow().is_null(), self.columns, f"{self.text}.is_null()")

    def is_in(self, values):
        values = list(values)
        pa = require("data", "pyarrow")
        return Expr(lambda: self.to_pyarrow().isin(pa.array(values)), self.columns, f"{self.text}.is_in({values!r})")

    def __bool__(self):
        raise TypeError("an expression has no truth value: combine expressions with &, | and ~ "
                        "(not and/or/not)")


def col(name):
    """The column ``name``."""
    pads = require("data", "pyarrow.dataset")
    return Expr(lambda: pads.field(name), [name], name)


def lit(value):
    """A constant."""
    pads = require("data", "pyarrow.dataset")
    return Expr(lambda: pads.scalar(value), [], repr(value))


_CMP = {ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Eq: operator.eq, ast.NotEq: operator.ne}
_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def parse(text):
    """An Expr from a string in Python syntax (comparisons, and/or/not, + - * /, in [...],
    ``is None``)."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"filter(expr={text!r}): not a valid expression: {e.msg}") from None

    def conv(node):
        if isinstance(node, ast.BoolOp):
            vals = [conv(v) for v in node.values]
            out = vals[0]
            for v in vals[1:]:
                out = (out & v) if isinstance(node.op, ast.And) else (out | v)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~conv(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return lit(0) - conv(node.operand)
        if isinstance(node, ast.Compare):
            left = conv(node.left)
            out = None
            for op, comp in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    vals = ast.literal_eval(comp)
                    e = left.is_in(vals)
                    e = ~e if isinstance(op, ast.NotIn) else e
                elif isinstance(op, (ast.Is, ast.IsNot)) and isinstance(comp, ast.Constant) and comp.value is None:
                    e = left.is_null()
                    e = ~e if isinstance(op, ast.IsNot) else e
                elif type(op) in _CMP:
                    right = conv(comp)
                    e = left._bin(right, _CMP[type(op)], "?")
                    left = right
                else:
                    raise ValueError(f"filter(expr={text!r}): unsupported comparison {type(op).__name__}")
                out = e if out is None else (out & e)
            return out
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            return conv(node.left)._bin(conv(node.right), _BIN[type(node.op)], "?")
        if isinstance(node, ast.Name):
            return col(node.id)
        if isinstance(node, ast.Constant):
            return lit(node.value)
        raise ValueError(f"filter(expr={text!r}): unsupported syntax {type(node).__name__}")

    e = conv(tree)
    e.text = text
    return e


def to_expr(expr):
    if isinstance(expr, Expr):
        return expr
    if isinstance(expr, str):
        return parse(expr)
    pads = require("data", "pyarrow.dataset")
    if isinstance(expr, pads.Expression):
        return Expr(lambda: expr, [], str(expr))
    raise TypeError(f"expr must be a string, an mpiray.data.expressions expression or a pyarrow Expression, "
                    f"got {type(expr).__name__}")


def evaluate_mask(block, pa_expr):
    """The boolean mask of ``pa_expr`` over the rows of ``block``."""
    pa = require("data", "pyarrow")
    if isinstance(block, pa.Table):
        t = block
    else:
        t = pa.table({k: B.numpy_column_to_arrow(v) for k, v in block.columns.items() if v.ndim == 1 and v.dtype != object}
                     | {k: pa.array(v.tolist()) for k, v in block.columns.items() if v.ndim == 1 and v.dtype == object})
    n = t.num_rows
    idx = pa.table({"__i": pa.array(np.arange(n, dtype=np.int64))})
    for name in t.schema.names:
        idx = idx.append_column(name, t.column(name))
    kept = idx.filter(pa_expr).column("__i").to_numpy()
    mask = np.zeros(n, dtype=bool)
    mask[kept] = True
    return mask
