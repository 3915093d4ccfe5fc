"""Docker's `--format`: the subset of Go's text/template it is written in, and
Docker's table layout (Go's text/tabwriter). Pure.

The template language (Go's text/template, the parts `docker ps`/`inspect`
users write):

    text                      copied as is
    {{.}}  {{.Field}}  {{.State.Status}}   the data, a field, a nested field
    {{json .}}  {{json .Config.Labels}}    a function applied to arguments
    {{.Names | upper}}        a pipeline: the value is the last argument of the next
    {{"literal"}}  {{3}}      string (Go's escapes, or a `raw` one) and integer literals
    {{- .X -}}                trim the white space before / after the action
    {{/* comment */}}

Functions: Docker's (cli/templates: json, split, join, title, lower, upper,
pad, truncate) and Go's `index` and `len`. Anything else (if, range, with,
variables, parentheses) is refused with a TemplateError naming it: the point
is a well-defined subset, not a second Go.

Values print as Go's fmt prints them (`%v`): strings as is, true/false,
integers, floats in Go's shortest form (5e+08), null as <nil>, lists as
`[a b]`, objects as `map[k:v]` with sorted keys (where Go would print a
struct as `{v1 v2}`: the JSON does not say which it was). `json` is compact,
does not escape HTML (Docker's encoder, SetEscapeHTML(false)) and sorts the
keys of maps as Go's encoder does (an object whose keys are all Go field
names, Docker's State or Config, keeps its order). A missing key is an
error, as in `docker inspect -f` (missingkey=error); a `Struct` (a fixed set
of fields, like `docker ps`'s context) says "can't evaluate field".

Errors read as Go's: `template: :1: function "foo" not defined` (parsing),
`template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"`
(executing; the column is the byte offset in its line).

Docker's format strings (cli/command/formatter): a `table` prefix asks for a
header row and aligned columns; `\\t` and `\\n` written as two characters
are a tab and a newline. Columns are laid out as Go's tabwriter with Docker's
settings (minimum width 10, padding 3): each tab-terminated cell of a block
of lines is as wide as its widest cell plus 3, the last cell of a line is not
padded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = ["FUNCTIONS", "HEADER_FUNCTIONS", "Struct", "Template", "TemplateError",
           "docker_format", "go_text", "parse", "tabwrite"]


class TemplateError(ValueError):
    """A template that cannot be parsed or executed; str() is Go's message."""


class Struct(dict):  # type: ignore[type-arg]
    """A fixed set of named fields (a Go struct): a missing one is "can't
    evaluate field X in type <type_name>". Callable values are methods
    (`{{.Label "com.example"}}`)."""

    def __init__(self, type_name: str, fields: Mapping[str, Any]) -> None:
        super().__init__(fields)
        self.type_name = type_name


# -- the syntax tree ------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """`.A.B`: names () is the dot itself. pos: offset of each `.Name`."""

    names: tuple[str, ...]
    pos: tuple[int, ...]
    start: int


@dataclass(frozen=True)
class Literal:
    value: Any
    start: int


@dataclass(frozen=True)
class Call:
    """A function (`json .X`) or a field given arguments (`.Label "x"`)."""

    target: str | Field
    args: tuple[Field | Literal, ...]
    start: int


Command = Field | Literal | Call


@dataclass(frozen=True)
class Action:
    pipeline: tuple[Command, ...]
    source: str        # the action's text, for error messages: <.Nope>
    start: int


class Template:
    """A parsed template; execute() renders it for one value."""

    def __init__(self, text: str, nodes: list[str | Action]) -> None:
        self.text = text
        self.nodes = nodes

    def execute(self, data: Any, functions: Mapping[str, Callable[..., Any]] | None = None
                ) -> str:
        """The template applied to `data` (dicts, lists and scalars, as JSON
        gives them). Raises TemplateError."""
        funcs = FUNCTIONS if functions is None else functions
        out: list[str] = []
        for node in self.nodes:
            if isinstance(node, str):
                out.append(node)
            else:
                out.append(go_text(self._pipeline(node, data, funcs)))
        return "".join(out)

    # -- evaluation -------------------------------------------------------------------
    def _where(self, offset: int) -> str:
        line = self.text.count("\n", 0, offset) + 1
        column = offset - (self.text.rfind("\n", 0, offset) + 1)
        return f":{line}:{column}"

    def _fail(self, offset: int, action: Action, at: str, message: str) -> TemplateError:
        return TemplateError(f'template: {self._where(offset)}: executing "" at <{at}>: '
                             f"{message}")

    def _pipeline(self, action: Action, data: Any,
                  funcs: Mapping[str, Callable[..., Any]]) -> Any:
        value: Any = _NOTHING
        for command in action.pipeline:
            value = self._command(command, action, data, funcs, value)
        return value

    def _command(self, command: Command, action: Action, data: Any,
                 funcs: Mapping[str, Callable[..., Any]], piped: Any) -> Any:
        extra = () if piped is _NOTHING else (piped,)
        if isinstance(command, Literal):
            if extra:
                raise self._fail(command.start, action, repr(command.value),
                                 "can't give argument to non-function")
            return command.value
        if isinstance(command, Field):
            value = self._field(command, action, data)
            if extra:
                if not callable(value):
                    raise self._fail(command.start, action, _field_text(command),
                                     f"can't give argument to non-function "
                                     f"{_field_text(command)}")
                return value(*extra)
            return value() if callable(value) else value
        args = [self._argument(a, action, data) for a in command.args] + list(extra)
        if isinstance(command.target, Field):
            method = self._field(command.target, action, data)
            if not callable(method):
                text = _field_text(command.target)
                raise self._fail(command.start, action, text,
                                 f"can't give argument to non-function {text}")
            fn = method
            name = _field_text(command.target)
        else:
            name = command.target
            fn = funcs[name]
        try:
            return fn(*args)
        except TemplateError:
            raise
        except (TypeError, ValueError, KeyError, IndexError) as e:
            raise self._fail(command.start, action, name,
                             f"error calling {name}: {e}") from None

    def _argument(self, arg: Field | Literal, action: Action, data: Any) -> Any:
        if isinstance(arg, Literal):
            return arg.value
        value = self._field(arg, action, data)
        return value() if callable(value) else value

    def _field(self, field: Field, action: Action, data: Any) -> Any:
        value = data
        for i, name in enumerate(field.names):
            at = "." + ".".join(field.names[: i + 1])
            if isinstance(value, Struct):
                if name not in value:
                    raise self._fail(field.pos[i], action, at,
                                     f"can't evaluate field {name} in type {value.type_name}")
                value = value[name]
            elif isinstance(value, dict):
                if name not in value:
                    raise self._fail(field.pos[i], action, at,
                                     f'map has no entry for key "{name}"')
                value = value[name]
            elif value is None:
                raise self._fail(field.pos[i], action, at,
                                 f"nil pointer evaluating {at}")
            else:
                raise self._fail(field.pos[i], action, at,
                                 f"can't evaluate field {name} in type {_type_name(value)}")
        return value


_NOTHING = object()


def _field_text(field: Field) -> str:
    return "." + ".".join(field.names)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


# -- parsing ----------------------------------------------------------------------------

_UNSUPPORTED = {"if", "else", "end", "range", "with", "define", "template", "block", "break",
                "continue", "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "printf",
                "print", "println", "call", "html", "js", "urlquery", "slice"}


def parse(text: str, functions: Mapping[str, Any] | None = None) -> Template:
    """Parse `text`. Raises TemplateError (Go's message) for a syntax error, an
    unknown function, or a part of Go's language this subset leaves out."""
    funcs = FUNCTIONS if functions is None else functions
    nodes: list[str | Action] = []
    pos = 0
    trim_next = False
    while True:
        start = text.find("{{", pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        if trim_next:
            chunk = chunk.lstrip(" \t\r\n")
        if start < 0:
            if chunk:
                nodes.append(chunk)
            return Template(text, nodes)
        inner = start + 2
        if text.startswith("- ", inner) or text.startswith("-\t", inner) or \
                text.startswith("-\n", inner):
            chunk = chunk.rstrip(" \t\r\n")
            inner += 1
        if chunk:
            nodes.append(chunk)
        end = _action_end(text, inner)
        if end < 0:
            raise TemplateError(f"template: :{_line(text, start)}: unclosed action")
        body_end = end
        trim_next = False
        if text[end - 1] == "-" and end - 2 >= inner and text[end - 2] in " \t\n":
            body_end = end - 1
            trim_next = True
        body = text[inner:body_end]
        if body.strip().startswith("/*"):
            if not body.strip().endswith("*/"):
                raise TemplateError(f"template: :{_line(text, start)}: unclosed comment")
        else:
            nodes.append(_action(text, inner, body_end, funcs))
        pos = end + 2


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _action_end(text: str, pos: int) -> int:
    """Where the action starting at `pos` ends (its "}}"), skipping strings."""
    i = pos
    while i < len(text):
        ch = text[i]
        if ch in "\"`":
            close = _string_end(text, i)
            if close < 0:
                return -1
            i = close + 1
            continue
        if text.startswith("}}", i):
            return i
        i += 1
    return -1


def _string_end(text: str, start: int) -> int:
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            return i
        if text[i] == "\n" and quote == '"':
            return -1
        i += 1
    return -1


def _action(text: str, start: int, end: int, funcs: Mapping[str, Any]) -> Action:
    line = _line(text, start)

    def fail(message: str) -> TemplateError:
        return TemplateError(f"template: :{line}: {message}")

    tokens = _tokens(text, start, end, fail)
    if not tokens:
        raise fail("missing value for command")
    commands: list[list[tuple[str, Any, int]]] = [[]]
    for token in tokens:
        if token[0] == "|":
            commands.append([])
        else:
            commands[-1].append(token)
    pipeline: list[Command] = []
    for i, cmd in enumerate(commands):
        if not cmd:
            raise fail("missing command" if i else "missing value for command")
        pipeline.append(_command(cmd, fail, funcs))
    return Action(tuple(pipeline), text[start:end].strip(), start)


def _command(cmd: list[tuple[str, Any, int]], fail: Callable[[str], TemplateError],
             funcs: Mapping[str, Any]) -> Command:
    kind, value, pos = cmd[0]
    args: list[Field | Literal] = []
    for k, v, p in cmd[1:]:
        if k == "ident":
            raise fail(f'function "{v}" as an argument is not supported by juggler\'s '
                       f"--format (write a pipeline: ... | {v})")
        args.append(v if k == "field" else Literal(v, p))
    if kind == "ident":
        if value in _UNSUPPORTED:
            raise fail(f'"{value}" is not supported by juggler\'s --format (Go template '
                       "subset: fields, literals and the functions json, join, split, lower, "
                       "upper, title, pad, truncate, index, len)")
        if value not in funcs:
            raise fail(f'function "{value}" not defined')
        return Call(value, tuple(args), pos)
    if kind == "field":
        return Call(value, tuple(args), pos) if args else value
    if args:
        raise fail(f"can't give argument to non-function {go_text(value)}")
    return Literal(value, pos)


def _tokens(text: str, start: int, end: int, fail: Callable[[str], TemplateError]
            ) -> list[tuple[str, Any, int]]:
    out: list[tuple[str, Any, int]] = []
    i = start
    while i < end:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch == "|":
            out.append(("|", None, i))
            i += 1
        elif ch == ".":
            begin = i
            names: list[str] = []
            pos: list[int] = []
            while i < end and text[i] == ".":
                j = i + 1
                while j < end and (text[j].isalnum() or text[j] == "_"):
                    j += 1
                name = text[i + 1:j]
                if not name:
                    if names:
                        raise fail(f'unexpected "." after {text[begin:i]}')
                    i = j          # the dot itself
                    break
                if name[0].isdigit():
                    raise fail(f'bad field name "{name}"')
                names.append(name)
                pos.append(i)
                i = j
            if i < end and text[i] not in " \t\r\n|":
                raise fail(f'unexpected "{text[i]}" in operand')
            out.append(("field", Field(tuple(names), tuple(pos), begin), begin))
        elif ch in "\"`":
            close = _string_end(text, i)
            if close < 0 or close >= end:
                raise fail("unterminated quoted string")
            raw = text[i:close + 1]
            out.append(("literal", _unquote(raw, fail), i))
            i = close + 1
        elif ch.isdigit() or (ch == "-" and i + 1 < end and text[i + 1].isdigit()):
            j = i + 1
            while j < end and text[j].isdigit():
                j += 1
            out.append(("literal", int(text[i:j]), i))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < end and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            if word in ("true", "false"):
                out.append(("literal", word == "true", i))
            elif word == "nil":
                raise fail("nil is not a command")
            else:
                out.append(("ident", word, i))
            i = j
        elif ch == "$":
            raise fail("variables ($x) are not supported by juggler's --format")
        elif ch in "()":
            raise fail("parentheses are not supported by juggler's --format (use a pipeline)")
        else:
            raise fail(f'unexpected "{ch}" in command')
    return out


def _unquote(raw: str, fail: Callable[[str], TemplateError]) -> str:
    if raw[0] == "`":
        return raw[1:-1]
    try:
        # Go's escapes are a superset of JSON's for what people write (\n \t \" \\ \u);
        # \x and \a-style ones are mapped first.
        body = raw[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            if body[i] != "\\":
                out.append(body[i])
                i += 1
                continue
            nxt = body[i + 1]
            simple = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a",
                      "b": "\b", "f": "\f", "v": "\v", "'": "'"}
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
            elif nxt == "x":
                out.append(chr(int(body[i + 2:i + 4], 16)))
                i += 4
            elif nxt == "u":
                out.append(chr(int(body[i + 2:i + 6], 16)))
                i += 6
            elif nxt == "U":
                out.append(chr(int(body[i + 2:i + 10], 16)))
                i += 10
            else:
                raise ValueError(nxt)
        return "".join(out)
    except (ValueError, IndexError):
        raise fail(f"invalid syntax: {raw}") from None


# -- values as Go prints them ----------------------------------------------------------

def go_text(value: Any) -> str:
    """`value` as Go's fmt %v prints the same JSON value."""
    if value is _NOTHING:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if value is None:
        return "<nil>"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), as fmt's %v prints a float64: the
    shortest digits; an exponent when it is below -4 or at least 6 (1e+06)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    exp = len(text) + exponent - 1       # the decimal exponent of the first digit
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{prefix}0.{'0' * (-exp - 1)}{text}"
    if len(text) <= exp + 1:
        return prefix + text + "0" * (exp + 1 - len(text))
    return f"{prefix}{text[:exp + 1]}.{text[exp + 1:]}"


def _json(value: Any) -> str:
    return json.dumps(_go_numbers(value), separators=(",", ":"), ensure_ascii=False)


_FIELD = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


def _go_numbers(value: Any) -> Any:
    """`value` as Go's encoding/json writes what it decoded: whole floats as
    integers (500000000, not 500000000.0); a map's keys sorted, a struct's
    fields in their order. A JSON object whose keys all look like Go's
    exported field names is taken for a struct (Docker's State, Config), any
    other for a map (Labels)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        items = value.items()
        if not all(isinstance(k, str) and _FIELD.match(k) for k in value):
            items = sorted(items, key=lambda kv: str(kv[0]))
        return {k: _go_numbers(v) for k, v in items}
    if isinstance(value, list):
        return [_go_numbers(v) for v in value]
    return value


def _pad(source: Any, prefix: int, suffix: int) -> str:
    text = go_text(source)
    return " " * prefix + text + " " * suffix if text else ""


def _truncate(source: Any, length: int) -> str:
    text = go_text(source)
    return text if len(text) < length else text[:length]


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key)
        elif isinstance(item, (list, tuple)) and isinstance(key, int):
            item = item[key]
        else:
            raise ValueError(f"can't index item of type {_type_name(item)}")
    return item


def _title(source: Any) -> str:
    text = go_text(source)
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json,
    "split": lambda s, sep: go_text(s).split(sep),
    "join": lambda items, sep: sep.join(go_text(i) for i in items),
    "title": _title,
    "lower": lambda s: go_text(s).lower(),
    "upper": lambda s: go_text(s).upper(),
    "pad": _pad,
    "truncate": _truncate,
    "index": _index,
    "len": len,
}

# Docker renders a table's header by running the same template on the
# headers, with functions that leave their argument alone.
HEADER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    name: (lambda first, *rest: first) for name in FUNCTIONS
}


# -- Docker's format strings and tables ----------------------------------------------

TABLE = "table"


def docker_format(fmt: str) -> tuple[bool, str]:
    """(whether it is a table, the template's text): Docker's preFormat, which
    drops the `table` prefix, trims spaces and turns the two characters `\\t`
    and `\\n` into a tab and a newline."""
    is_table = fmt.startswith(TABLE)
    text = fmt[len(TABLE):] if is_table else fmt
    text = text.strip(" ")
    return is_table, text.replace("\\t", "\t").replace("\\n", "\n")


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter (padchar ' ', no flags) over `text`: cells end with
    a tab; each column of a block of consecutive lines that have it is as wide
    as its widest cell plus `padding`, at least `minwidth`."""
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[list[int]] = [[0] * (len(cells) - 1) for cells in lines]

    def layout(first: int, last: int, column: int) -> None:
        i = first
        while i < last:
            if len(lines[i]) - 1 <= column:
                i += 1
                continue
            j = i
            width = minwidth
            while j < last and len(lines[j]) - 1 > column:
                width = max(width, len(lines[j][column]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][column] = width
            layout(i, j, column + 1)
            i = j

    layout(0, len(lines), 0)
    out = []
    for cells, ws in zip(lines, widths, strict=True):
        out.append("".join(c.ljust(w) for c, w in zip(cells, ws, strict=False)) + cells[-1])
    return "\n".join(out)
