#!/usr/bin/env python3
"""The layer rule for paths inside the crate, which a grep for crate names cannot see.

src/domain may name nothing of the crate outside crate::domain; src/application may
name crate::domain and crate::application only. Every `crate::` and `super::` path
counts, in a `use` or inline, and grouped imports (`use crate::{domain::X,
infrastructure::Y}`, over several lines) are split into their paths. Comments and
string literals are blanked first, so that prose and SQL cannot trip the check.

Prints each offending path as `file:line: path (rule)` and exits 1 if there is one.
"""

import os
import re
import sys

# The layer (first directory under src/) -> the top-level modules of the crate it may name.
ALLOWED = {
    "domain": {"domain"},
    "application": {"domain", "application"},
}


def blank(text):
    """The source with comments, strings and char literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(text)

    def keep_lines(chunk):
        return "".join(c if c == "\n" else " " for c in chunk)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(keep_lines(text[i:end]))
            i = end
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(keep_lines(text[i:j]))
            i = j
        elif (m := re.compile(r'b?r(#*)"').match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = '"' + m.group(1)
            end = text.find(close, m.end())
            end = n if end < 0 else end + len(close)
            out.append(keep_lines(text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(keep_lines(text[i : j + 1]))
            i = j + 1
        elif m := re.compile(r"b?'(?:[^'\\\n]|\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.))'").match(text, i):
            out.append(keep_lines(m.group(0)))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


TOKEN = re.compile(r"\s*(::|[{},*;]|[A-Za-z_][A-Za-z0-9_]*)")


def tokens(code, i):
    """Tokens of a path from position i on, until the path ends."""
    while True:
        m = TOKEN.match(code, i)
        if not m:
            return
        yield m.group(1)
        i = m.end()


def paths(toks):
    """The paths a use tree stands for, as lists of segments: `a::{b, c::d}` -> [a, b], [a, c, d]."""
    prefix = []
    for tok in toks:
        if tok == "::":
            continue
        if tok == "{":
            result, depth, group = [], 1, []
            for inner in toks:
                if inner == "{":
                    depth += 1
                elif inner == "}":
                    depth -= 1
                    if depth == 0:
                        break
                if depth == 1 and inner == ",":
                    result += [prefix + p for p in paths(iter(group))]
                    group = []
                else:
                    group.append(inner)
            result += [prefix + p for p in paths(iter(group))]
            return result or [prefix]
        if tok == "*":
            return [prefix + ["*"]]
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
            if tok == "as":
                break
            prefix.append(tok)
            nxt = next(toks, None)
            if nxt != "::":
                break
            continue
        break
    return [prefix] if prefix else []


def inline_modules(code):
    """(start, end, name) of every `mod name { ... }` in the blanked code."""
    spans = []
    for m in re.finditer(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{", code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        spans.append((m.start(), j, m.group(1)))
    return spans


def module_of(path):
    """src/domain/user.rs -> [domain, user]; src/domain/mod.rs -> [domain]."""
    parts = os.path.relpath(path, "src").removesuffix(".rs").split(os.sep)
    return parts[:-1] if parts[-1] == "mod" else parts


def check_file(path, layer):
    code = blank(open(path, encoding="utf-8").read())
    spans = inline_modules(code)
    found = []
    for m in re.finditer(r"(?<![\w$])(crate|super)\s*::", code):
        if m.group(1) == "crate":
            here, toks = [], tokens(code, m.end())
        else:
            modules = [name for start, end, name in spans if start < m.start() < end]
            here, toks = module_of(path) + modules, tokens(code, m.start())
        for segments in paths(toks):
            resolved = list(here)
            written = ("crate::" if m.group(1) == "crate" else "") + "::".join(segments)
            while segments and segments[0] in ("super", "self"):
                if segments.pop(0) == "super":
                    if not resolved:
                        break
                    resolved.pop()
            resolved += segments
            top = resolved[0] if resolved else "(the crate root)"
            if top not in ALLOWED[layer] and top not in ("self", "*"):
                line = code.count("\n", 0, m.start()) + 1
                found.append(f"{path}:{line}: {written} (src/{layer} may name only "
                             f"{', '.join('crate::' + a for a in sorted(ALLOWED[layer]))})")
    return found


def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    violations = []
    for layer in ALLOWED:
        for root, _, files in os.walk(os.path.join("src", layer)):
            for name in sorted(files):
                if name.endswith(".rs"):
                    violations += check_file(os.path.join(root, name), layer)
    for violation in violations:
        print(violation)
    if violations:
        print(f"check-layers: {len(violations)} path(s) reach outside their layer (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
