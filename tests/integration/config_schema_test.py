#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Integration: constellation-agent's schema table (main/config.c) against its documentation
and its own parsing.

The table is printed by `constellation-agent --config-schema`. Checked here:
- README.md's settings table ("The device agent", the | key | default | meaning | table) names
  exactly the table's keys, and shows each key's default as the table does;
- docs/man/constellation-agent.8 names every key;
- --check-config shows every key by its path, with the README's default when it is not set;
- every key is parsed as its kind says: a value of the wrong type, and for numbers one past
  either end of the range, is a configuration error (exit 78) naming the key's path; the
  range's ends themselves are accepted.

The README's meaning column stays prose written by hand (it says much more than a line of help);
what drifts — a key added to the code and not to the README, a default changed in one place —
fails here.

usage: config_schema_test.py BUILD_DIR SOURCE_DIR
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import aiptest

BUILD, SRC = sys.argv[1], sys.argv[2]
AGENT = os.path.join(BUILD, "main", "constellation-agent")
TMP = tempfile.mkdtemp(prefix="aip-config-schema.")
checks = aiptest.Checks()
check = checks.check

r = subprocess.run([AGENT, "--config-schema"], capture_output=True, text=True)
schema = json.loads(r.stdout) if r.returncode == 0 else []
paths = [k["path"] for k in schema]
check("--config-schema: exit 0, a JSON list of keys", r.returncode == 0 and len(schema) > 30,
      (r.returncode, r.stderr))
check("every key once, each with a kind, a default and help",
      len(set(paths)) == len(paths) and all(k.get("kind") and k.get("default") and k.get("help")
                                            for k in schema), schema)
by_path = {k["path"]: k for k in schema}


# ---- README ------------------------------------------------------------------------------------

def readme_rows():
    text = open(os.path.join(SRC, "README.md"), encoding="utf-8").read()
    sect = text[text.index("## The device agent"):]
    sect = sect[sect.index("**Settings**"):]
    lines = sect.split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith("| key | default | meaning |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        rows.append((cells[0], cells[1]))
    return rows


def expand(key_cell, default_cell):
    """[(path, default)] of one README row: "`a.b` / `c`" is a.b and a.c (defaults split on
    " / "); "`a`, `b`" are a and b (their defaults, consecutive repeats once, joined by ", ")."""
    names = re.findall(r"`([^`]+)`", key_cell)
    if len(names) == 1:
        return [(names[0], default_cell)]
    if " / " in key_cell:
        section = names[0].rsplit(".", 1)[0] + "." if "." in names[0] else ""
        full = [names[0]] + [section + n for n in names[1:]]
        defaults = default_cell.split(" / ")
        return list(zip(full, defaults)) if len(defaults) == len(full) else [(n, None) for n in full]
    return [(n, ("group", default_cell)) for n in names]


readme = {}
for key_cell, default_cell in readme_rows():
    for path, d in expand(key_cell, default_cell):
        readme[path] = d
check("README's settings table names exactly the schema's keys",
      set(readme) == set(paths),
      {"only in README": sorted(set(readme) - set(paths)),
       "only in the schema": sorted(set(paths) - set(readme))})
bad = []
groups = {}
for path, d in readme.items():
    if path not in by_path:
        continue
    if isinstance(d, tuple):
        groups.setdefault(d[1], []).append(by_path[path]["default"])
    elif d != by_path[path]["default"]:
        bad.append((path, d, by_path[path]["default"]))
for cell, ds in groups.items():
    joined = ", ".join(d for i, d in enumerate(ds) if i == 0 or d != ds[i - 1])
    if joined != cell:
        bad.append((cell, joined))
check("README's defaults are the schema's", not bad, bad)

# ---- the man page ------------------------------------------------------------------------------
man = open(os.path.join(SRC, "docs", "man", "constellation-agent.8"), encoding="utf-8").read()
man = man.replace("\\-", "-")
missing = [p for p in paths if not re.search(r"(?<![\w.])" + re.escape(p) + r"(?![\w])", man)]
check("the man page names every key", not missing, missing)

# ---- --check-config ----------------------------------------------------------------------------


def shown_default(doc):
    """The README's default as --check-config shows it, or KeyError when it is prose."""
    doc = doc.strip("*`")
    m = re.fullmatch(r"(\d+) MiB", doc)
    if m:
        return int(m.group(1)) << 20
    if doc.isdigit():
        return int(doc)
    return {"true": True, "false": False, "{}": {}, "json": "json", "query": "query",
            "info": "info", "auto": "auto"}[doc]


def config_rc(cfg):
    path = os.path.join(TMP, "c.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    os.chmod(path, 0o600)
    return subprocess.run([AGENT, "--server", "ws://127.0.0.1:1/ws", "--config", path,
                           "--check-config"], capture_output=True, text=True)


r = config_rc({})
shown = json.loads(r.stdout) if r.returncode == 0 else {}
check("--check-config shows every key by its path", r.returncode == 0 and
      all(p in shown for p in paths), [p for p in paths if p not in shown])
bad = []
for k in schema:
    doc = k["default"]
    if doc == "none":
        want = [] if isinstance(shown.get(k["path"]), list) else None  # no list, or null
    else:
        try:
            want = shown_default(doc)
        except KeyError:  # prose: the required server, the host name, the system CAs
            continue
    if k["path"] in shown and shown[k["path"]] != want:
        bad.append((k["path"], shown[k["path"]], want))
check("--check-config shows the documented default of every key not set", not bad, bad)
check("--check-config: the summary keys still there (max_frame from the library's default)",
      shown.get("max_frame") == shown.get("limits.max_frame") == 1 << 20
      and shown.get("workers") == shown.get("tools.workers") and "mcp_servers" in shown, shown)


# ---- parsing by kind ---------------------------------------------------------------------------

def nest(path, value):
    cfg = value
    for part in reversed(path.split(".")):
        cfg = {part: cfg}
    return cfg


BAD = {"string": [5, ""], "path": [True, ""], "bool": ["yes", 1], "integer": ["5", 1.5],
       "size": ["5", 2.5], "enum": ["nope", 3], "string list": ["x", [""], [7]],
       "object": [5]}
bad = []
for k in schema:
    p = k["path"]
    values = list(BAD[k["kind"]])
    if "min" in k:
        values += [k["min"] - 1, k["max"] + 1]
    if p == "tools.mcp.servers":
        values = [5, [5]]
    for v in values:
        r = config_rc(nest(p, v))
        named = p if p != "tools.mcp.servers" or v == 5 else "tools.mcp.servers[0]"
        if r.returncode != 78 or named not in r.stderr:
            bad.append((p, v, r.returncode, r.stderr.strip()))
    if "min" in k:
        for v in (k["min"], k["max"]):
            r = config_rc(nest(p, v))
            if r.returncode != 0 or json.loads(r.stdout).get(p) != v:
                bad.append((p, v, r.returncode, r.stderr.strip()))
check("every key: a bad value exits 78 naming its path; a range's ends are taken", not bad, bad)
r = config_rc({"limits": {"max_frame": 4096, "colour": 1}})
check("an unknown key in a section is named with its path",
      r.returncode == 78 and 'unknown key "limits.colour"' in r.stderr, r.stderr)
r = config_rc({"tools": {"read_file": 5}})
check("a section that is not an object is named", r.returncode == 78
      and '"tools.read_file" must be an object' in r.stderr, r.stderr)

sys.exit(checks.summary("config schema: "))
