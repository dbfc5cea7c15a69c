#!/usr/bin/env python3
"""Checks the seams of the production code (DESIGN.md's module list):

- no two .c files call each other's functions in a loop (a cycle of any
  length among the files of the tree, found over function definitions and
  the names each file calls or takes the address of);
- no module includes another module's private header (a module's public
  header is its folder name .h: model/model.h; the rest of the folder is
  private to it);
- a module includes only modules listed above it (util < data < model <
  features < autoencoder < index < server < cli).

Tests and benchmarks may include the private headers of the module they
test or measure, so tests/ and bench/ are not checked. Exits 1 and prints
each finding when there is one. The call graph is read with regular
expressions, not a compiler: a definition is a line that starts at column 0
with a return type and a name followed by a parameter list and '{', without
'static' (or an INLINE_ macro) before the name."""
import pathlib
import re
import sys

MODULES = ["util", "data", "model", "features", "autoencoder", "index", "server", "cli"]
ROOT = pathlib.Path(__file__).resolve().parent.parent

DEF = re.compile(
    r"^(?![^\n(]*\b(?:static|INLINE_\w+)\b)[A-Za-z_][^\n;{}()#]*?\b([A-Za-z_]\w*)\s*\([^;{]*\)\s*\{",
    re.M)
CALL = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
VALUE = re.compile(r"[=,(]\s*&?([A-Za-z_]\w*)\b")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/([A-Za-z_0-9]+)\.h"', re.M)


def strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(?:\\.|[^"\\\n])*"', '""', text)


def sources():
    for mod in MODULES:
        for path in sorted((ROOT / mod).rglob("*")):
            if path.suffix in (".c", ".h", ".cu") and path.is_file():
                yield mod, path


def file_cycles(files):
    defined = {}
    text = {}
    for path in files:
        text[path] = strip(path.read_text(errors="replace"))
        for m in DEF.finditer(text[path]):
            defined.setdefault(m.group(1), path)
    uses = {}
    for path, body in text.items():
        names = set(CALL.findall(body)) | set(VALUE.findall(body))
        uses[path] = {}
        for n in names:
            home = defined.get(n)
            if home and home != path:
                uses[path].setdefault(home, set()).add(n)
    # Tarjan's strongly connected components: each with two or more files is
    # a loop.
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in uses[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in text:
        if v not in index:
            visit(v)
    lines = []
    for comp in found:
        lines.append("files that call each other: " + ", ".join(str(p.relative_to(ROOT)) for p in comp))
        for a in comp:
            for b in comp:
                if b in uses[a]:
                    lines.append("  %s calls %s of %s" % (a.relative_to(ROOT),
                                                         ", ".join(sorted(uses[a][b])),
                                                         b.relative_to(ROOT)))
    return lines


def include_findings():
    lines = []
    for mod, path in sources():
        for m in INCLUDE.finditer(strip_keep_includes(path.read_text(errors="replace"))):
            other, header = m.groups()
            if other == mod or other not in MODULES:
                continue
            rel = path.relative_to(ROOT)
            if header != other:
                lines.append("%s includes %s/%s.h, private to %s/" % (rel, other, header, other))
            elif MODULES.index(other) > MODULES.index(mod):
                lines.append("%s includes %s/%s.h, a module below %s/" % (rel, other, header, mod))
    return lines


def strip_keep_includes(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def main():
    c_files = [p for _, p in sources() if p.suffix == ".c"]
    findings = file_cycles(c_files) + include_findings()
    for line in findings:
        print(line)
    if findings:
        return 1
    print("layering: no files calling each other in a loop, no private or upward includes "
          "(%d files)" % len(c_files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
