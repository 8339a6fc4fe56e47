"""Label selectors (=, ==, !=, in, notin, exists, !exists) and field selectors.

Field selectors are limited, per kind, to the fields the real server indexes
(metadata.name, metadata.namespace, plus e.g. spec.nodeName on pods); anything else gets the
real 400 'field label not supported'.
"""

import re

from . import errors

# The label selector grammar of k8s.io/apimachinery/pkg/labels/selector.go (Lexer, Parser.parse,
# parseRequirement, parseKeyAndInferOperator, parseOperator, parseValues, parseIdentifiersList,
# parseExactValue, NewRequirement): tokens are split on whitespace and on the special symbols
# = ! ( ) , > <, so "app in(web)" is valid while "app=web," and "app in (we b)" are not; keys and
# values are then checked as label keys and values. The messages are the parser's.
_SPECIAL = "=!(),><"
_SYMBOLS = {")": "closed", ",": "comma", "!": "not", "==": "eqeq", "=": "eq", ">": "gt",
            "<": "lt", "!=": "neq", "(": "open"}
_KEYWORDS = {"in": "in", "notin": "notin"}
_QNAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def _lex(text):
    """[(token, literal)] ending with ("end", "")."""
    out, i, n = [], 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            out.append(("end", ""))
            return out
        if text[i] in _SPECIAL:
            buf, last = "", None
            while i < n and text[i] in _SPECIAL:
                buf += text[i]
                if buf in _SYMBOLS:
                    last = (_SYMBOLS[buf], buf)
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            if last is None:
                out.append(("error", f"error expected: keyword found '{buf}'"))
            else:
                out.append(last)
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in " \t\r\n":
            j += 1
        word = text[i:j]
        i = j
        out.append((_KEYWORDS.get(word, "ident"), word))


def _valid_key(key):
    parts = key.split("/")
    if len(parts) > 2 or not parts[-1] or len(parts[-1]) > 63 or not re.fullmatch(_QNAME, parts[-1]):
        return False
    if len(parts) == 2 and (not parts[0] or len(parts[0]) > 253 or not re.fullmatch(_SUBDOMAIN, parts[0])):
        return False
    return True


def _valid_value(value):
    return len(value) <= 63 and (value == "" or re.fullmatch(_QNAME, value) is not None)


class _Parser:
    def __init__(self, text):
        self.items = _lex(text)
        self.pos = 0

    def look(self, values=True):
        tok, lit = self.items[self.pos]
        return ("ident" if values and tok in ("in", "notin") else tok), lit

    def take(self, values=True):
        tok, lit = self.look(values)
        self.pos += 1
        return tok, lit

    def parse(self):
        reqs = []
        while True:
            tok, lit = self.look()
            if tok == "end":
                return reqs
            if tok not in ("ident", "not"):
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except ValueError as exc:
                raise ValueError(f"unable to parse requirement: {exc}")
            tok, lit = self.take()
            if tok == "end":
                return reqs
            if tok != "comma":
                raise ValueError(f"found '{lit}', expected: ',' or 'end of string'")
            tok2, lit2 = self.look()
            if tok2 not in ("ident", "not"):
                raise ValueError(f"found '{lit2}', expected: identifier after ','")

    def requirement(self):
        op = None
        tok, lit = self.take()
        if tok == "not":
            op = "!exists"
            tok, lit = self.take()
        if tok != "ident":
            raise ValueError(f"found '{lit}', expected: identifier")
        key = lit
        if not _valid_key(key):
            raise ValueError(f"invalid label key \"{key}\": name part must consist of alphanumeric "
                             f"characters, '-', '_' or '.', and must start and end with an "
                             f"alphanumeric character")
        if op is not None or self.look()[0] in ("end", "comma"):
            return (key, op or "exists", [])  # "!a=b": the caller refuses the "="
        tok, lit = self.take(values=False)
        op = {"in": "in", "notin": "notin", "eq": "=", "eqeq": "=", "neq": "!=",
              "gt": "gt", "lt": "lt"}.get(tok)
        if op is None:
            raise ValueError(f"found '{lit}', expected: '=', '!=', '==', 'in', notin'")
        values = self.set_values() if op in ("in", "notin") else self.exact_value()
        if op in ("in", "notin") and not values:
            raise ValueError("for 'in', 'notin' operators, values set can't be empty")
        for v in values:
            if op in ("gt", "lt"):
                if not re.fullmatch(r"-?[0-9]+", v):
                    raise ValueError(f"for 'Gt', 'Lt' operators, the value must be an integer")
            elif not _valid_value(v):
                raise ValueError(f"invalid label value: \"{v}\": at key: \"{key}\": a valid label "
                                 f"must be an empty string or consist of alphanumeric characters, "
                                 f"'-', '_' or '.', and must start and end with an alphanumeric "
                                 f"character")
        return (key, op, values)

    def set_values(self):
        tok, lit = self.take()
        if tok != "open":
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.look()
        if tok == "closed":
            self.take()
            return [""]
        if tok not in ("ident", "comma"):
            raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")
        values = []
        while True:
            tok, lit = self.take()
            if tok == "ident":
                values.append(lit)
                tok2, lit2 = self.look()
                if tok2 == "comma":
                    self.take()
                    if self.look()[0] == "closed":
                        values.append("")
                    continue
                if tok2 == "closed":
                    self.take()
                    return sorted(set(values))
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == "comma":
                values.append("")
                if self.look()[0] == "closed":
                    self.take()
                    return sorted(set(values))
                continue
            if tok == "closed":
                return sorted(set(values))
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self):
        tok, lit = self.look()
        if tok in ("end", "comma"):
            return [""]
        tok, lit = self.take()
        if tok == "ident":
            return [lit]
        raise ValueError(f"found '{lit}', expected: identifier")


def parse_label_selector(text):
    """Returns a list of requirements (key, op, values); raises BadRequest on what labels.Parse
    refuses."""
    if not text:
        return []
    try:
        return _Parser(text).parse()
    except ValueError as exc:
        raise errors.BadRequest(str(exc))


def match_labels(reqs, labels):
    labels = labels or {}
    for key, op, values in reqs:
        present = key in labels
        if op == "=" and (not present or labels[key] != values[0]):
            return False
        if op == "!=" and present and labels[key] == values[0]:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
        if op in ("gt", "lt"):
            try:
                have, want = int(labels[key]), int(values[0])
            except (KeyError, ValueError):
                return False
            if (have <= want) if op == "gt" else (have >= want):
                return False
    return True


def label_selector_from_object(selector):
    """metav1.LabelSelector (matchLabels/matchExpressions) to requirements."""
    reqs = []
    for k, v in (selector or {}).get("matchLabels", {}).items():
        reqs.append((k, "=", [v]))
    for expr in (selector or {}).get("matchExpressions", []) or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists",
              "DoesNotExist": "!exists"}.get(expr.get("operator"))
        if op:
            reqs.append((expr.get("key"), op, list(expr.get("values") or [])))
    return reqs


def parse_field_selector(text, rtype):
    """Returns [(path, op, value)], checking the paths this kind supports."""
    reqs = []
    if not text:
        return reqs
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\[\]/-]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise errors.BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
        path, op, value = m.group(1), m.group(2), m.group(3)
        if path not in rtype.field_selectors:
            raise errors.BadRequest(
                f'field label not supported: {path}')
        if path == "name":  # PVs and PVCs: "a bug, but we need to support it" (registry)
            path = "metadata.name"
        reqs.append((path, "!=" if op == "!=" else "=", value))
    return reqs


def field_value(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def match_fields(reqs, obj):
    for path, op, value in reqs:
        actual = field_value(obj, path)
        if (actual == value) != (op == "="):
            return False
    return True
