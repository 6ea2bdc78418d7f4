#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""server_layers: aip-test-server's files call each other only downwards.

The comment at the top of tools/aip-test-server/server.h lists the server's .c files, each
calling functions only of the files listed below it. This reads that list, finds the
functions each file defines (not static), and fails on any call to a function of a file
listed above the caller, and on a .c file the list leaves out.

usage: server_layers.py SOURCE_DIR
"""
import os
import re
import sys


def strip_comments_and_strings(src):
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    src = re.sub(r"//[^\n]*", " ", src)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', src)


def main():
    root = os.path.join(sys.argv[1], "tools", "aip-test-server")
    header = open(os.path.join(root, "server.h"), encoding="utf-8").read()
    m = re.search(r"Who may call whom.*?\n \*\n(.*?)\n \*\n", header, re.S)
    if not m:
        print("FAIL: server.h has no 'Who may call whom' list")
        return 1
    order = re.findall(r"^ \*   (\S+\.c)\s", m.group(1), re.M)
    present = sorted(f for f in os.listdir(root) if f.endswith(".c"))
    missing = [f for f in present if f not in order]
    if missing or len(order) < 5:
        print("FAIL: server.h's list leaves out %s (list: %s)" % (missing, order))
        return 1
    defined = {}
    code = {}
    for f in order:
        code[f] = strip_comments_and_strings(open(os.path.join(root, f), encoding="utf-8").read())
        for d in re.finditer(r"^(?!static\b)[a-z][\w \*]*?\b(\w+)\(", code[f], re.M):
            if d.group(1) != "main":
                defined[d.group(1)] = f
    bad = 0
    calls = 0
    for f in order:
        for name, owner in defined.items():
            if owner == f or not re.search(r"\b%s\s*\(" % name, code[f]):
                continue
            calls += 1
            if order.index(owner) < order.index(f):
                print("FAIL: %s calls %s() of %s, which is above it in server.h" % (f, name, owner))
                bad += 1
    if calls < 20:  # the scan itself broke: the files do call each other
        print("FAIL: found only %d calls between files" % calls)
        return 1
    print("server_layers: %d files, %d cross-file calls, %d upward" % (len(order), calls, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
