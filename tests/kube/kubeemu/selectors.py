"""Label selectors (=, ==, !=, in, notin, exists, !exists) and field selectors.

Field selectors are limited, per kind, to the fields the real server indexes
(metadata.name, metadata.namespace, plus e.g. spec.nodeName on pods); anything else gets the
real 400 'field label not supported'.
"""

import re

from . import errors

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def parse_label_selector(text):
    """Returns a list of requirements (key, op, values); raises BadRequest on garbage."""
    reqs = []
    if not text:
        return reqs
    for part in _split_top(text):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\((.*)\)", part)
        if m:
            values = [v.strip() for v in m.group(3).split(",") if v.strip()]
            reqs.append((m.group(1), m.group(2), values))
            continue
        m = re.fullmatch(rf"!\s*({_KEY})", part)
        if m:
            reqs.append((m.group(1), "!exists", []))
            continue
        m = re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)", part)
        if m:
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append((m.group(1), op, [m.group(3)]))
            continue
        m = re.fullmatch(rf"({_KEY})", part)
        if m:
            reqs.append((m.group(1), "exists", []))
            continue
        raise errors.BadRequest(f"unable to parse requirement: {part!r}")
    return reqs


def _split_top(text):
    """Split on commas outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


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
