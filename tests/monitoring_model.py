"""A model of Cloud Logging and Cloud Monitoring just big enough to evaluate the pipeline module's
log-based metrics, alert conditions and dashboard queries on the JSON lines the functions write.

Everything is read from terraform/modules/pipeline itself, never copied here:

- `Terraform`: the module's locals and resource attributes, with `var.*` from the defaults and an
  environment's own values, through an evaluator of the HCL expressions the module uses
  (references, string templates and heredocs, arithmetic, comparisons, conditionals, and the
  functions replace, format, lower, trim, substr, length, join, coalesce, jsonencode).
- `log_entry`: what Cloud Logging makes of one JSON line a Cloud Run revision writes to stdout.
- `LogFilter`: the Logging query language, the part the filters use: comparisons `=`, `!=`,
  `:`, `<`, `<=`, `>`, `>=` on field paths, `A=(B OR C)`, AND, OR, NOT and parentheses.
- `LogMetric`: a log-based metric (counter or distribution) as Cloud Logging writes it: one
  DELTA point a minute per time series, labels from its label_extractors, values from its
  value_extractor; each point keeps its interval, as Monarch stores it.
- `promql`: the PromQL the alert conditions and the dashboard use, evaluated at one instant.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from terraform.terraform_hcl import MODULE, module_locals, named_blocks, resources

MINUTE = 60.0


# ------------------------------------------------------------------------------- Terraform
class Terraform:
    """The module's values for one environment (`var.*` overrides on top of the defaults)."""

    def __init__(self, variables: dict[str, Any]):
        declared = named_blocks(MODULE, "variable")
        self.vars = {name: self._default(body) for name, body in declared.items()} | variables
        self.raw_locals = module_locals()
        self._locals: dict[str, Any] = {}

    def _default(self, body: dict):
        value = body.get("default")
        return {} if value == {} else value

    def local(self, name: str):
        if name not in self._locals:
            self._locals[name] = self.value(self.raw_locals[name])
        return self._locals[name]

    def value(self, raw):
        """A value as python-hcl2 gives it (strings still templates) made concrete."""
        if isinstance(raw, dict):
            return {key: self.value(item) for key, item in raw.items()}
        if isinstance(raw, list):
            return [self.value(item) for item in raw]
        if isinstance(raw, str):
            return self.template(raw)
        return raw

    def template(self, text: str):
        """A string python-hcl2 gives: a heredoc (raw), or a quoted string whose escapes it has
        already applied. A template that is one interpolation is that value, of its type."""
        heredoc = re.fullmatch(r"<<(-?)([A-Z]+)\n(.*?)\n\s*\2", text, re.S)
        if heredoc:
            body = heredoc.group(3)
            if heredoc.group(1):
                lines = body.split("\n")
                indent = min((len(line) - len(line.lstrip(" ")) for line in lines if line.strip()), default=0)
                body = "\n".join(line[indent:] for line in lines)
            text = body + "\n"
        return _Template(self, text).render()

    def resource(self, type_: str, name: str, *keys: str) -> dict:
        """Attributes of one resource block (`keys`: only those), made concrete."""
        body = resources(type_)[name]
        return {key: self.value(value) for key, value in body.items() if not keys or key in keys}

    def reference(self, path: list[str]):
        root, *rest = path
        if root == "var":
            value = self.vars[rest[0]]
        elif root == "local":
            value = self.local(rest[0])
        elif root == "path" and rest == ["module"]:
            return str(MODULE)
        elif root.startswith("google_") or root == "data":
            return f"(known after apply: {'.'.join(map(str, path))})"
        else:
            raise NotImplementedError(f"no value for {'.'.join(map(str, path))}")
        for key in rest[1:]:
            value = value[key]
        return value


class _Template:
    """A template's text: literal parts, `$${` escapes and `${expression}` interpolations."""

    def __init__(self, tf: Terraform, text: str):
        self.tf, self.text = tf, text

    def render(self):
        parts, pos, text = [], 0, self.text
        while True:
            start = text.find("${", pos)
            while start > 0 and text[start - 1] == "$":  # $${ is a literal ${
                parts.append(text[pos:start - 1] + "${")
                pos = start + 2
                start = text.find("${", pos)
            if start < 0:
                parts.append(text[pos:])
                break
            parts.append(text[pos:start])
            parser = _Expression(self.tf, text, start + 2)
            value = parser.parse()
            parser.expect("}")
            if start == 0 and parser.pos == len(text) and len(parts) == 1 and parts[0] == "":
                return value  # the whole template is one interpolation: keep its type
            parts.append(_to_string(value))
            pos = parser.pos
        return "".join(parts)


def _to_string(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float, str)):
        return str(value)
    raise TypeError(f"cannot interpolate {value!r}")


def _tf_format(spec: str, *args) -> str:
    values = iter(args)
    return re.sub(r"%(0?\d*)([ds])", lambda m: format(next(values), m.group(1) + ("d" if m.group(2) == "d" else "")), spec)


def _tf_replace(string: str, search: str, replacement: str) -> str:
    if len(search) > 1 and search.startswith("/") and search.endswith("/"):
        return re.sub(search[1:-1], replacement.replace("$", "\\"), string)
    return string.replace(search, replacement)


_FUNCTIONS: dict[str, Callable] = {
    "replace": _tf_replace,
    "format": _tf_format,
    "lower": str.lower,
    "trim": lambda s, chars: s.strip(chars),
    "substr": lambda s, offset, length: s[offset:offset + length] if length >= 0 else s[offset:],
    "length": len,
    "join": lambda sep, items: sep.join(_to_string(i) for i in items),
    "coalesce": lambda *args: next(a for a in args if a is not None and a != ""),
    "jsonencode": lambda value: json.dumps(value, separators=(",", ":")),
}


class _Expression:
    """A recursive-descent evaluator of the HCL expressions the module's templates hold."""

    def __init__(self, tf: Terraform, text: str, pos: int):
        self.tf, self.text, self.pos = tf, text, pos

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self, token: str) -> bool:
        self.ws()
        return self.text.startswith(token, self.pos)

    def accept(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.accept(token):
            raise SyntaxError(f"expected {token!r} at {self.text[self.pos:self.pos + 40]!r}")

    def parse(self):
        condition = self.logical()
        if self.accept("?"):
            yes = self.parse()
            self.expect(":")
            no = self.parse()
            return yes if condition else no
        return condition

    def logical(self):
        left = self.comparison()
        while True:
            if self.accept("&&"):
                right = self.comparison()
                left = bool(left) and bool(right)
            elif self.accept("||"):
                right = self.comparison()
                left = bool(left) or bool(right)
            else:
                return left

    def comparison(self):
        left = self.additive()
        for op, fn in (("==", lambda a, b: a == b), ("!=", lambda a, b: a != b), (">=", lambda a, b: a >= b),
                       ("<=", lambda a, b: a <= b), (">", lambda a, b: a > b), ("<", lambda a, b: a < b)):
            if self.accept(op):
                return fn(left, self.additive())
        return left

    def additive(self):
        value = self.term()
        while True:
            if self.accept("+"):
                value = value + self.term()
            elif self.peek("-") and not self.peek("->"):
                self.pos += 1
                value = value - self.term()
            else:
                return value

    def term(self):
        value = self.unary()
        while True:
            if self.accept("*"):
                value = value * self.unary()
            elif self.accept("/"):
                value = value / self.unary()
            elif self.accept("%"):
                value = value % self.unary()
            else:
                return value

    def unary(self):
        if self.accept("-"):
            return -self.unary()
        if self.accept("!"):
            return not self.unary()
        return self.primary()

    def primary(self):
        self.ws()
        char = self.text[self.pos]
        if char == "(":
            self.pos += 1
            value = self.parse()
            self.expect(")")
            return value
        if char == '"':
            return self.string()
        if char == "[":
            self.pos += 1
            items = []
            while not self.accept("]"):
                items.append(self.parse())
                self.accept(",")
            return items
        if char == "{":
            self.pos += 1
            items = {}
            while not self.accept("}"):
                key = self.string() if self.peek('"') else self.identifier()
                if not self.accept("="):
                    self.expect(":")
                items[key] = self.parse()
                self.accept(",")
            return items
        number = re.compile(r"\d+(\.\d+)?").match(self.text, self.pos)
        if number:
            self.pos = number.end()
            return float(number.group()) if number.group(1) else int(number.group())
        name = self.identifier()
        if name in ("true", "false"):
            return name == "true"
        if name == "null":
            return None
        if self.accept("("):
            args = []
            while not self.accept(")"):
                args.append(self.parse())
                self.accept(",")
            return _FUNCTIONS[name](*args)
        path = [name]
        while self.text.startswith(".", self.pos) or self.text.startswith("[", self.pos):
            if self.text[self.pos] == ".":
                self.pos += 1
                path.append(self.identifier())
            else:
                self.pos += 1
                path.append(self.parse())
                self.expect("]")
        return self.tf.reference(path)

    def identifier(self) -> str:
        self.ws()
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*").match(self.text, self.pos)
        if not match:
            raise SyntaxError(f"expected a name at {self.text[self.pos:self.pos + 40]!r}")
        self.pos = match.end()
        return match.group()

    def string(self) -> str:
        """A quoted template inside an expression: escapes apply, interpolations nest."""
        self.expect('"')
        parts = []
        while self.text[self.pos] != '"':
            char = self.text[self.pos]
            if char == "\\":
                escaped = self.text[self.pos + 1]
                parts.append({"n": "\n", "t": "\t", "r": "\r"}.get(escaped, escaped))
                self.pos += 2
            elif self.text.startswith("$${", self.pos):
                parts.append("${")
                self.pos += 3
            elif self.text.startswith("${", self.pos):
                self.pos += 2
                value = self.parse()
                self.expect("}")
                parts.append(_to_string(value))
            else:
                parts.append(char)
                self.pos += 1
        self.pos += 1
        return "".join(parts)


# ------------------------------------------------------------------------------- Cloud Logging
SEVERITIES = ("DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY")
# Keys of a structured JSON line that Cloud Logging lifts out of the payload into the LogEntry.
_LIFTED = ("severity", "time", "timestamp", "httpRequest", "logging.googleapis.com/labels",
           "logging.googleapis.com/trace", "logging.googleapis.com/spanId", "logging.googleapis.com/trace_sampled",
           "logging.googleapis.com/insertId", "logging.googleapis.com/sourceLocation", "logging.googleapis.com/operation")


def log_entry(line: dict, service: str, shift_seconds: float = 0.0) -> dict:
    """The LogEntry of one JSON line written to stdout by the Cloud Run service `service`
    (`shift_seconds` moves its timestamp, to replay a run at another time of day)."""
    entry = {
        "resource": {"type": "cloud_run_revision", "labels": {"service_name": service,
                                                              "revision_name": f"{service}-00001-abc",
                                                              "configuration_name": service, "location": "us-central1"}},
        "severity": line.get("severity", "DEFAULT"),
        "timestamp": datetime.fromisoformat(line["time"]).timestamp() + shift_seconds,
        "labels": dict(line.get("logging.googleapis.com/labels", {})),
        "jsonPayload": {key: value for key, value in line.items() if key not in _LIFTED},
    }
    if "httpRequest" in line:
        entry["httpRequest"] = line["httpRequest"]
    return entry


_MISSING = object()


def field_value(entry: dict, path: str):
    value = entry
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


class LogFilter:
    """One Logging query. Precedence as Cloud Logging's: NOT, then OR, then AND (so
    `a OR b AND c` is `(a OR b) AND c`); juxtaposed terms are ANDed."""

    _TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|(>=|<=|!=|=~|!~|[=:<>])|([^\s()"=:<>!]+))')

    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokenize(text)
        self.pos = 0
        self.tree = self._and()
        if self.pos != len(self.tokens):
            raise SyntaxError(f"unparsed filter tail {self.tokens[self.pos:]} in {text!r}")

    def matches(self, entry: dict) -> bool:
        return self._eval(self.tree, entry)

    def _tokenize(self, text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text.rstrip()):
            match = self._TOKEN.match(text, pos)
            if not match:
                raise SyntaxError(f"cannot read filter at {text[pos:]!r}")
            opening, closing, quoted, op, word = match.groups()
            if opening:
                tokens.append(("(", "("))
            elif closing:
                tokens.append((")", ")"))
            elif quoted is not None:
                tokens.append(("value", re.sub(r"\\(.)", r"\1", quoted)))
            elif op:
                tokens.append(("op", op))
            elif word in ("AND", "OR", "NOT"):
                tokens.append((word, word))
            else:
                tokens.append(("word", word))
            pos = match.end()
        return tokens

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, kind: str) -> str:
        token = self._peek()
        if token is None or token[0] != kind:
            raise SyntaxError(f"expected {kind} at {token} in {self.text!r}")
        self.pos += 1
        return token[1]

    def _and(self):
        terms = [self._or()]
        while self._peek() is not None and self._peek()[0] != ")":
            if self._peek()[0] == "AND":
                self.pos += 1
            terms.append(self._or())
        return ("and", terms) if len(terms) > 1 else terms[0]

    def _or(self):
        terms = [self._not()]
        while self._peek() is not None and self._peek()[0] == "OR":
            self.pos += 1
            terms.append(self._not())
        return ("or", terms) if len(terms) > 1 else terms[0]

    def _not(self):
        if self._peek() and self._peek()[0] == "NOT":
            self.pos += 1
            return ("not", self._not())
        if self._peek() and self._peek()[0] == "(":
            self.pos += 1
            inner = self._and()
            self._take(")")
            return inner
        path = self._take("word")
        op = self._take("op")
        if self._peek() and self._peek()[0] == "(":  # field=(A OR B): any of the values
            self.pos += 1
            values = [self._value()]
            while self._peek()[0] == "OR":
                self.pos += 1
                values.append(self._value())
            self._take(")")
            return ("or", [("cmp", path, op, value) for value in values])
        return ("cmp", path, op, self._value())

    def _value(self) -> str:
        token = self._peek()
        if token is None or token[0] not in ("value", "word"):
            raise SyntaxError(f"expected a value at {token} in {self.text!r}")
        self.pos += 1
        return token[1]

    def _eval(self, node, entry: dict) -> bool:
        kind = node[0]
        if kind == "and":
            return all(self._eval(n, entry) for n in node[1])
        if kind == "or":
            return any(self._eval(n, entry) for n in node[1])
        if kind == "not":
            return not self._eval(node[1], entry)
        _, path, op, wanted = node
        actual = field_value(entry, path)
        if actual is _MISSING or actual is None:
            return op == "!="
        return _compare(path, actual, op, wanted)


def _compare(path: str, actual, op: str, wanted: str) -> bool:
    if path == "severity":
        left, right = SEVERITIES.index(str(actual).upper()), SEVERITIES.index(wanted.upper())
    elif isinstance(actual, (int, float)) and not isinstance(actual, bool) and _is_number(wanted):
        left, right = float(actual), float(wanted)
    else:
        left, right = (json.dumps(actual) if isinstance(actual, (dict, list)) else str(actual)), wanted
    if op == ":":
        return right.lower() in left.lower() if isinstance(left, str) else left == right
    return {"=": left == right, "!=": left != right, "<": left < right, "<=": left <= right,
            ">": left > right, ">=": left >= right}[op]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


_EXTRACT = re.compile(r"EXTRACT\(([\w.]+)\)")


def extract(extractor: str, entry: dict):
    """EXTRACT(field) of a label or value extractor; None when the entry has no such field."""
    match = _EXTRACT.fullmatch(extractor.strip())
    assert match, f"only EXTRACT(field) is modelled, not {extractor!r}"
    value = field_value(entry, match.group(1))
    return None if value is _MISSING else value


# ------------------------------------------------------------------------------- log-based metrics
@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, value)


@dataclass
class LogMetric:
    """A google_logging_metric of the module."""

    resource_name: str
    name: str
    filter: LogFilter
    distribution: bool
    label_extractors: dict[str, str]
    value_extractor: str | None
    bounds: list[float]

    @classmethod
    def of(cls, tf: Terraform, resource_name: str) -> "LogMetric":
        body = tf.resource("google_logging_metric", resource_name, "name", "filter", "metric_descriptor",
                           "label_extractors", "value_extractor", "bucket_options")
        descriptor = body["metric_descriptor"][0]
        distribution = descriptor["value_type"] == "DISTRIBUTION"
        return cls(resource_name, body["name"], LogFilter(body["filter"]), distribution,
                   body.get("label_extractors") or {}, body.get("value_extractor"),
                   _bounds(body["bucket_options"][0]) if distribution else [])

    @property
    def promql_name(self) -> str:
        return f"logging_googleapis_com:user_{self.name}"

    def matching(self, entries: Iterable[dict]) -> list[dict]:
        return [entry for entry in entries if self.filter.matches(entry)]

    def series(self, entries: Iterable[dict]) -> list[Series]:
        """The time series Cloud Logging writes for these entries: per resource and metric labels,
        one DELTA point per minute that has entries (a distribution as PromQL sees it: _sum,
        _count and cumulative _bucket{le} series)."""
        buckets: dict[tuple, dict[float, list]] = defaultdict(lambda: defaultdict(list))
        for entry in self.matching(entries):
            labels = {"monitored_resource": entry["resource"]["type"], **entry["resource"]["labels"]}
            for key, extractor in self.label_extractors.items():
                value = extract(extractor, entry)
                labels[key] = "" if value is None else str(value)
            value = 1.0
            if self.distribution:
                value = extract(self.value_extractor, entry)
                if value is None:
                    continue  # Cloud Logging drops an entry whose value cannot be extracted
                value = float(value)
            minute = math.floor(entry["timestamp"] / MINUTE) * MINUTE
            buckets[tuple(sorted(labels.items()))][minute].append(value)
        out = []
        for key, minutes in buckets.items():
            labels = dict(key)
            if not self.distribution:
                out.append(Series({"__name__": self.promql_name, **labels},
                                  [(m, m + MINUTE, float(len(v))) for m, v in sorted(minutes.items())]))
                continue
            out.append(Series({"__name__": self.promql_name + "_sum", **labels},
                              [(m, m + MINUTE, float(sum(v))) for m, v in sorted(minutes.items())]))
            out.append(Series({"__name__": self.promql_name + "_count", **labels},
                              [(m, m + MINUTE, float(len(v))) for m, v in sorted(minutes.items())]))
            for bound in [*self.bounds, math.inf]:
                le = "+Inf" if bound == math.inf else _to_string(float(bound))
                out.append(Series({"__name__": self.promql_name + "_bucket", **labels, "le": le},
                                  [(m, m + MINUTE, float(sum(1 for x in v if x < bound or bound == math.inf)))
                                   for m, v in sorted(minutes.items())]))
        return out


def _bounds(options: dict) -> list[float]:
    if "explicit_buckets" in options:
        return [float(b) for b in options["explicit_buckets"][0]["bounds"]]
    if "exponential_buckets" in options:
        spec = options["exponential_buckets"][0]
        return [spec["scale"] * spec["growth_factor"] ** i for i in range(spec["num_finite_buckets"] + 1)]
    spec = options["linear_buckets"][0]
    return [spec["offset"] + spec["width"] * i for i in range(spec["num_finite_buckets"] + 1)]


def module_metrics(tf: Terraform) -> dict[str, LogMetric]:
    return {name: LogMetric.of(tf, name) for name in resources("google_logging_metric")}


def all_series(metrics: Iterable[LogMetric], entries: list[dict]) -> list[Series]:
    return [series for metric in metrics for series in metric.series(entries)]


# ------------------------------------------------------------------------------- PromQL
LOOKBACK = 300.0  # an instant selector's look-back (5 minutes)

Labels = tuple  # sorted (key, value) pairs


@dataclass
class Vector:
    samples: dict[Labels, float]

    def __bool__(self) -> bool:
        return bool(self.samples)


@dataclass
class Matrix:
    samples: dict[Labels, list[tuple[float, float, float]]]
    window: float


def _labels(d: dict) -> Labels:
    return tuple(sorted(d.items()))


def _drop_name(labels: Labels) -> Labels:
    return tuple(item for item in labels if item[0] != "__name__")


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PROM_TOKEN = re.compile(r"""\s*(?:
    (?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![smhdw\w])
  | (?P<duration>\d+[smhdw])
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],])
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
)""", re.X)
_AGGREGATIONS = {"sum", "max", "min", "count", "avg"}
_SET_OPS = {"and", "or", "unless"}


def promql(query: str, series: list[Series], at: float):
    """Evaluate `query` at Unix time `at` over `series`: a Vector, or a float for a scalar."""
    return _PromQL(query, series, at).run()


class _PromQL:
    def __init__(self, query: str, series: list[Series], at: float):
        self.query, self.series, self.at = query, series, at
        self.tokens = self._tokenize(query)
        self.pos = 0

    def run(self):
        value = self._or()
        if self.pos != len(self.tokens):
            raise SyntaxError(f"unparsed query tail {self.tokens[self.pos:]}")
        return value

    def _tokenize(self, query: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while query[pos:].strip():
            match = _PROM_TOKEN.match(query, pos)
            if not match:
                raise SyntaxError(f"cannot read query at {query[pos:pos + 40]!r}")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind)))
            pos = match.end()
        return tokens

    def _peek(self, offset: int = 0):
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else (None, None)

    def _accept(self, text: str) -> bool:
        if self._peek()[1] == text:
            self.pos += 1
            return True
        return False

    def _expect(self, text: str) -> None:
        if not self._accept(text):
            raise SyntaxError(f"expected {text!r} at {self.tokens[self.pos:self.pos + 5]}")

    def _label_list(self) -> list[str]:
        self._expect("(")
        names = []
        while not self._accept(")"):
            names.append(self.tokens[self.pos][1])
            self.pos += 1
            self._accept(",")
        return names

    # precedence, lowest first: or; and unless; comparisons; + -; * / %
    def _or(self):
        left = self._and()
        while self._peek()[1] == "or":
            self.pos += 1
            on = self._label_list() if self._accept("on") else None
            left = self._set_op("or", left, self._and(), on)
        return left

    def _and(self):
        left = self._comparison()
        while self._peek()[1] in ("and", "unless"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            on = self._label_list() if self._accept("on") else None
            left = self._set_op(op, left, self._comparison(), on)
        return left

    def _comparison(self):
        left = self._additive()
        while self._peek()[1] in ("==", "!=", ">", "<", ">=", "<="):
            op = self.tokens[self.pos][1]
            self.pos += 1
            as_bool = self._accept("bool")
            left = self._binary(op, left, self._additive(), comparison=True, as_bool=as_bool)
        return left

    def _additive(self):
        left = self._multiplicative()
        while self._peek()[1] in ("+", "-"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = self._binary(op, left, self._multiplicative())
        return left

    def _multiplicative(self):
        left = self._unary()
        while self._peek()[1] in ("*", "/", "%"):
            op = self.tokens[self.pos][1]
            self.pos += 1
            left = self._binary(op, left, self._unary())
        return left

    def _unary(self):
        if self._accept("-"):
            return self._binary("*", -1.0, self._unary())
        return self._primary()

    def _primary(self):
        kind, text = self._peek()
        if text == "(":
            self.pos += 1
            value = self._or()
            self._expect(")")
            return value
        if kind == "number":
            self.pos += 1
            return float(text)
        if kind != "name":
            raise SyntaxError(f"unexpected {text!r}")
        if text in _AGGREGATIONS and self._peek(1)[1] in ("(", "by", "without"):
            return self._aggregation()
        if self._peek(1)[1] == "(" and text not in _SET_OPS:
            return self._function()
        return self._selector()

    def _aggregation(self):
        op = self.tokens[self.pos][1]
        self.pos += 1
        by = without = None
        if self._accept("by"):
            by = self._label_list()
        elif self._accept("without"):
            without = self._label_list()
        self._expect("(")
        inner = self._or()
        self._expect(")")
        if self._accept("by"):
            by = self._label_list()
        elif self._accept("without"):
            without = self._label_list()
        groups: dict[Labels, list[float]] = defaultdict(list)
        for labels, value in inner.samples.items():
            if by is not None:
                key = tuple(item for item in labels if item[0] in by)
            else:
                key = tuple(item for item in _drop_name(labels) if without is not None and item[0] not in without)
            groups[key].append(value)
        reduce = {"sum": sum, "max": max, "min": min, "count": lambda v: float(len(v)),
                  "avg": lambda v: sum(v) / len(v)}[op]
        return Vector({key: reduce(values) for key, values in groups.items()})

    def _function(self):
        name = self.tokens[self.pos][1]
        self.pos += 2
        args = []
        while not self._accept(")"):
            args.append(self._or())
            self._accept(",")
        if name == "time":
            return self.at
        if name == "vector":
            return Vector({(): float(args[0])})
        if name == "hour":
            moment = self.at if not args else None
            assert moment is not None, "hour(v) is not modelled, only hour()"
            return Vector({(): float(datetime.fromtimestamp(moment, timezone.utc).hour)})
        if name == "histogram_quantile":
            return _histogram_quantile(args[0], args[1])
        over_time = {"max_over_time": max, "min_over_time": min, "sum_over_time": sum,
                     "count_over_time": lambda v: float(len(v)), "avg_over_time": lambda v: sum(v) / len(v),
                     # A DELTA point holds the increase over its interval: the increase over a
                     # window is the sum of the points that end in it.
                     "increase": sum}
        if name in over_time:
            (matrix,) = args
            assert isinstance(matrix, Matrix), f"{name} takes a range vector"
            return Vector({_drop_name(labels): over_time[name]([p[2] for p in points])
                           for labels, points in matrix.samples.items() if points})
        if name == "rate":
            (matrix,) = args
            return Vector({_drop_name(labels): sum(p[2] for p in points) / matrix.window
                           for labels, points in matrix.samples.items() if points})
        raise NotImplementedError(f"PromQL function {name} is not modelled")

    def _selector(self):
        name = self.tokens[self.pos][1]
        self.pos += 1
        matchers = [("__name__", "=", name)]
        if self._accept("{"):
            while not self._accept("}"):
                label = self.tokens[self.pos][1]
                op = self.tokens[self.pos + 1][1]
                value = json.loads(self.tokens[self.pos + 2][1])
                self.pos += 3
                matchers.append((label, op, value))
                self._accept(",")
        chosen = [s for s in self.series if all(_label_matches(s.labels.get(label, ""), op, value)
                                                 for label, op, value in matchers)]
        if self._accept("["):
            duration = self.tokens[self.pos][1]
            self.pos += 1
            self._expect("]")
            window = float(duration[:-1]) * _DURATION[duration[-1]]
            return Matrix({_labels(s.labels): [p for p in s.points if self.at - window < p[1] <= self.at] for s in chosen},
                          window)
        samples = {}
        for s in chosen:
            recent = [p for p in s.points if self.at - LOOKBACK < p[1] <= self.at]
            if recent:
                samples[_labels(s.labels)] = recent[-1][2]
        return Vector(samples)

    def _binary(self, op: str, left, right, comparison: bool = False, as_bool: bool = False):
        apply = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
                 "/": lambda a, b: a / b if b else (math.nan if a == 0 else math.copysign(math.inf, a)),
                 "%": math.fmod, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
                 ">": lambda a, b: a > b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b,
                 "<=": lambda a, b: a <= b}[op]
        if isinstance(left, float) and isinstance(right, float):
            return float(apply(left, right))
        if isinstance(left, float) or isinstance(right, float):
            vector, scalar_left = (right, True) if isinstance(left, float) else (left, False)
            out = {}
            for labels, value in vector.samples.items():
                result = apply(left, value) if scalar_left else apply(value, right)
                if comparison and not as_bool:
                    if result:
                        out[labels] = value
                else:
                    out[_drop_name(labels)] = float(result)
            return Vector(out)
        rights = {_drop_name(labels): value for labels, value in right.samples.items()}
        out = {}
        for labels, value in left.samples.items():
            key = _drop_name(labels)
            if key not in rights:
                continue
            result = apply(value, rights[key])
            if comparison and not as_bool:
                if result:
                    out[labels] = value
            else:
                out[key] = float(result)
        return Vector(out)

    def _set_op(self, op: str, left: Vector, right: Vector, on: list[str] | None) -> Vector:
        def key(labels: Labels) -> Labels:
            return tuple(i for i in labels if i[0] in on) if on is not None else _drop_name(labels)

        right_keys = {key(labels) for labels in right.samples}
        if op == "and":
            return Vector({l: v for l, v in left.samples.items() if key(l) in right_keys})
        if op == "unless":
            return Vector({l: v for l, v in left.samples.items() if key(l) not in right_keys})
        left_keys = {key(labels) for labels in left.samples}
        return Vector(left.samples | {l: v for l, v in right.samples.items() if key(l) not in left_keys})


def _label_matches(actual: str, op: str, wanted: str) -> bool:
    return {"=": actual == wanted, "!=": actual != wanted,
            "=~": re.fullmatch(wanted, actual) is not None, "!~": re.fullmatch(wanted, actual) is None}[op]


def _histogram_quantile(q: float, buckets: Vector) -> Vector:
    """Prometheus's histogram_quantile: linear interpolation inside the bucket the rank falls in."""
    groups: dict[Labels, list[tuple[float, float]]] = defaultdict(list)
    for labels, count in buckets.samples.items():
        le = dict(labels)["le"]
        groups[tuple(i for i in _drop_name(labels) if i[0] != "le")].append((math.inf if le == "+Inf" else float(le), count))
    out = {}
    for key, points in groups.items():
        points.sort()
        total = points[-1][1]
        if total == 0:
            continue
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in points:
            if count >= rank:
                if bound == math.inf:
                    out[key] = lower_bound
                else:
                    out[key] = lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-12)
                break
            lower_bound, lower_count = bound, count
    return Vector(out)


def firing(result) -> bool:
    """A PromQL alert condition is met while its query returns at least one sample."""
    return bool(result.samples) if isinstance(result, Vector) else False


def only_value(result) -> float:
    assert isinstance(result, Vector) and len(result.samples) == 1, result
    return next(iter(result.samples.values()))
