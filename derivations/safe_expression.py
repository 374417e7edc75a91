"""Build SymPy expressions from untrusted text without evaluating any Python.

A configuration may come from someone else's repository, so ``task.expression``
must never reach :func:`sympy.sympify` (which calls ``eval``).  The text is parsed
by :func:`ast.parse` into a syntax tree, which is only *read*: every node must be
one of a short whitelist, and the SymPy expression is built from the tree here.

Allowed
-------
* numbers (finite, ``|value| ≤ MAX_CONSTANT``) and the constants ``pi`` and ``E``;
* the variables and parameters the caller names;
* ``+ - * / **`` and unary ``+ -``;
* calls of the functions in :data:`FUNCTIONS` with positional arguments.

Everything else (attributes, subscripts, keywords, strings, lambdas, comparisons,
names not declared, ``^``) is rejected with a :class:`UnsafeExpression` naming the
offending piece.  Sizes are bounded (text length, node count, nesting depth,
numeric exponents) so that neither parsing nor SymPy's automatic evaluation can
exhaust the machine.

Examples
--------
>>> import sympy as sp
>>> x0, w = sp.symbols("x0 w", real=True)
>>> build("sin(w*x0) + x0**2 / 2", {"x0": x0, "w": w})
x0**2/2 + sin(w*x0)
>>> build("__import__('os').system('true')", {"x0": x0})
Traceback (most recent call last):
...
attnflow.derivations.safe_expression.UnsafeExpression: only the functions ... may be called (got a call of something that is not a plain name)
"""

import ast
import math
import re

import sympy as sp

MAX_LENGTH = 2000        # characters of text
MAX_NODES = 400          # syntax-tree nodes
MAX_DEPTH = 40           # nesting depth of the tree
MAX_CONSTANT = 1e15      # magnitude of a literal number
MAX_EXPONENT = 64        # magnitude of a numeric exponent (x**64 is plenty; 10**10**10 is not)
MAX_FOLDED = 1e100       # magnitude of any constant sub-expression, e.g. exp(200)

FUNCTIONS = {
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan,
    "asin": sp.asin, "acos": sp.acos, "atan": sp.atan,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt,
    "erf": sp.erf, "abs": sp.Abs, "Abs": sp.Abs,
}
CONSTANTS = {"pi": sp.pi, "E": sp.E}

# Names a caller may not declare as a variable or parameter: they are functions or
# constants here, or would read as code in the Python that sympy.lambdify prints.
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
RESERVED = frozenset(FUNCTIONS) | frozenset(CONSTANTS) | frozenset(
    {"I", "S", "N", "O", "Q", "oo", "zoo", "nan", "inf", "lambda", "numpy", "math", "mpmath", "builtins",
     "import", "exec", "eval", "open"})

_BINARY = {ast.Add: sp.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sp.Mul, ast.Div: lambda a, b: a / b}


class UnsafeExpression(ValueError):
    """The text is not an expression of the allowed form; the message says why."""


def check_name(name):
    """Raise :class:`UnsafeExpression` unless ``name`` can be a parameter of an expression."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise UnsafeExpression(f"{name!r} is not a valid name (a letter, then up to 31 letters, digits or _)")
    if name in RESERVED or re.fullmatch(r"[xy]\d+", name):
        raise UnsafeExpression(f"{name!r} is reserved (a function, a constant, or a variable x0, x1, …)")


def build(text, symbols):
    """Build the SymPy expression of ``text`` from its syntax tree, never evaluating it as Python.

    Parameters
    ----------
    text : str
        Arithmetic on numbers, the given names and the allowed functions and constants.
    symbols : dict
        ``{name: Symbol}``: the only names besides the allowed functions and constants.

    Returns
    -------
    sympy.Expr

    Raises
    ------
    UnsafeExpression
        (a ValueError) for anything else, text that is too long or nests too deeply.
    """
    if not isinstance(text, str):
        raise UnsafeExpression(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise UnsafeExpression(f"is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise UnsafeExpression(f"cannot parse {_short(text)} as an arithmetic expression") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise UnsafeExpression(f"has {nodes} syntax nodes; at most {MAX_NODES} are allowed")
    expr = _Builder(symbols).visit(tree.body, 0)
    if expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise UnsafeExpression(f"{_short(text)} is undefined or infinite (a division by zero, log(0), …)")
    return expr


def build_number(text):
    """A finite real number written as a constant expression (``"0.5"``, ``"-pi/2"``, ``"1e-3"``)."""
    value = build(text, {})
    if not value.is_number:
        raise UnsafeExpression(f"{_short(text)} is not a number")
    number = complex(sp.N(value))
    if number.imag != 0 or not math.isfinite(number.real):
        raise UnsafeExpression(f"{_short(text)} is not a finite real number")
    return number.real


def _short(text, width=60):
    return repr(text if len(text) <= width else text[:width] + "…")


class _Builder:
    def __init__(self, symbols):
        self.symbols = dict(symbols)

    def visit(self, node, depth):
        if depth > MAX_DEPTH:
            raise UnsafeExpression(f"is nested more than {MAX_DEPTH} levels deep")
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise UnsafeExpression(f"{_describe(node)} is not allowed; use numbers, the variables, "
                                   "+ - * / **, and the functions " + ", ".join(sorted(FUNCTIONS)))
        value = method(node, depth + 1)
        if value.is_number:
            _check_constant(value, node)
        return value

    def _Constant(self, node, depth):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UnsafeExpression(f"the constant {v!r} is not a real number")
        if not math.isfinite(v) or abs(v) > MAX_CONSTANT:
            raise UnsafeExpression(f"the constant {v!r} is not a finite number of magnitude ≤ {MAX_CONSTANT:g}")
        # Exact rationals: SymPy leaves functions of them unevaluated (a Float would be
        # evaluated at once, and exp(exp(1e15)) would exhaust the memory).
        return sp.Integer(v) if isinstance(v, int) else sp.Rational(repr(v))

    def _Name(self, node, depth):
        if node.id in self.symbols:
            return self.symbols[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        known = ", ".join(sorted(self.symbols)) or "none"
        raise UnsafeExpression(f"unknown symbol(s) {node.id} (variables and declared parameters: {known})")

    def _UnaryOp(self, node, depth):
        operand = self.visit(node.operand, depth)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return operand
        raise UnsafeExpression(f"the operator {type(node.op).__name__} is not allowed")

    def _BinOp(self, node, depth):
        if isinstance(node.op, ast.BitXor):
            raise UnsafeExpression("'^' is not a power here; write x0**2")
        left, right = self.visit(node.left, depth), self.visit(node.right, depth)
        if isinstance(node.op, ast.Pow):
            if right.is_number and abs(complex(sp.N(right))) > MAX_EXPONENT:
                raise UnsafeExpression(f"the exponent {ast.unparse(node.right)} exceeds {MAX_EXPONENT} in magnitude")
            return sp.Pow(left, right)
        if type(node.op) in _BINARY:
            return _BINARY[type(node.op)](left, right)
        raise UnsafeExpression(f"the operator {type(node.op).__name__} is not allowed; use + - * / **")

    def _Call(self, node, depth):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = f"{node.func.id!r}" if isinstance(node.func, ast.Name) else "something that is not a plain name"
            raise UnsafeExpression(f"only the functions {', '.join(sorted(FUNCTIONS))} may be called "
                                   f"(got a call of {what})")
        if node.keywords or len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise UnsafeExpression(f"{node.func.id} takes exactly one positional argument")
        return FUNCTIONS[node.func.id](self.visit(node.args[0], depth))


def _check_constant(value, node):
    """Every constant sub-expression is evaluated once, bounded, so none can blow up later."""
    if value.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
        raise UnsafeExpression(f"{ast.unparse(node)!r} is undefined or infinite (a division by zero, log(0), …)")
    number = complex(sp.N(value))
    if number.imag != 0:
        raise UnsafeExpression(f"the constant {ast.unparse(node)!r} is not real")
    if not (math.isfinite(number.real) and math.isfinite(number.imag)) or abs(number) > MAX_FOLDED:
        raise UnsafeExpression(f"the constant {ast.unparse(node)!r} exceeds {MAX_FOLDED:g} in magnitude")


def _describe(node):
    names = {"Attribute": "attribute access (a.b)", "Subscript": "indexing (a[b])", "Lambda": "lambda",
             "Compare": "a comparison", "BoolOp": "and/or", "IfExp": "if/else", "Call": "this call",
             "JoinedStr": "an f-string", "List": "a list", "Tuple": "a tuple", "Dict": "a dict",
             "Set": "a set", "NamedExpr": "an assignment (:=)", "Starred": "*args"}
    return names.get(type(node).__name__, type(node).__name__)
