#!/bin/bash
# A developer's workday in about fifteen seconds, with no model anywhere: interpreters with
# their usual imports, a C build, git over a few hundred files, Node, archives, grep over
# headers, SQLite, a large log and its copy, NumPy data arrays saved and loaded (mapped too),
# .bin files from the system, the node binary read whole.
#
# Usage: workday.sh WORKDIR VENV_PYTHON. Everything it writes stays under WORKDIR. It fails on
# the first command that fails (set -e), so the test knows the work was done.
set -euo pipefail
work=$1
vpy=$2
cd "$work"

# Interpreters: each start opens site-packages/*.pth.
for _ in 1 2 3; do
    python3 -c 'import json, os, re, sqlite3, subprocess, email.parser, http.client, xml.etree.ElementTree, asyncio, decimal, logging, argparse'
done
"$vpy" -c 'import numpy, yaml, requests, json; print(numpy.__version__)' >/dev/null

# A small C project.
mkdir -p cproj
for n in 1 2 3 4; do
    cat >"cproj/unit$n.c" <<EOF
#include <stdio.h>
#include <string.h>
int unit$n(int x) { char b[64]; snprintf(b, sizeof b, "%d", x * $n); return (int)strlen(b) + x; }
EOF
done
cat >cproj/main.c <<'EOF'
#include <stdio.h>
int unit1(int), unit2(int), unit3(int), unit4(int);
int main(void) { printf("%d\n", unit1(1) + unit2(2) + unit3(3) + unit4(4)); return 0; }
EOF
for f in cproj/*.c; do gcc -O2 -Wall -c "$f" -o "${f%.c}.o"; done
gcc -o cproj/app cproj/*.o
./cproj/app >/dev/null

# git over a few hundred files.
mkdir -p repo/src repo/docs
for i in $(seq 1 300); do
    printf 'def f%d(x):\n    return x + %d\n' "$i" "$i" >"repo/src/mod$i.py"
done
for i in $(seq 1 20); do echo "# page $i" >"repo/docs/page$i.md"; done
git -C repo init -q
git -C repo add -A
git -C repo -c user.email=dev@example.com -c user.name=dev commit -qm "initial import"
echo "change" >>repo/src/mod1.py
git -C repo status --short >/dev/null
git -C repo diff --stat >/dev/null
git -C repo log --oneline >/dev/null

# Node.
node -e 'const zlib = require("zlib"); const b = Buffer.alloc(1 << 22, 7); console.log(zlib.gzipSync(b).length)' >/dev/null

# grep over system headers.
grep -r -c "#define" /usr/include/linux >/dev/null || true

# SQLite, from Python and from its shell.
python3 -c '
import sqlite3
c = sqlite3.connect("app.db")
c.execute("create table events(id integer primary key, name text, value real)")
c.executemany("insert into events(name, value) values (?, ?)", ((f"event-{i}", i * 0.5) for i in range(200000)))
c.commit()
print(c.execute("select count(*), sum(value) from events where name like ?", ("event-1%",)).fetchone())
' >/dev/null
sqlite3 app.db 'select count(*) from events;' >/dev/null

# A 300 MB log, grepped and copied (log rotation).
python3 -c '
line = b"2025-01-01T00:00:00Z INFO request handled path=/api/v1/items status=200 took_ms=12 worker=7\n"
chunk = line * ((1 << 20) // len(line))
with open("app.log", "wb") as f:
    for _ in range(300):
        f.write(chunk)
'
grep -c "status=500" app.log >/dev/null || true
cp app.log app.log.1

# NumPy data arrays: saved, loaded, and loaded memory-mapped and computed with (a few seconds
# of every core on a large mapping, as hot as inference).
"$vpy" -c '
import numpy as np
a = np.random.default_rng(0).standard_normal((4096, 4096))
np.save("features.npy", a)
b = np.load("features.npy", mmap_mode="r")
x = np.ones((64, 4096))
s = 0.0
for _ in range(40):
    s += float((x @ b)[0, 0])
c = np.load("features.npy")
print(s, c.shape)
' >/dev/null

# Archives: the project, the rotated log and the data array (120 MB compressed), created and
# extracted.
tar czf backup.tgz repo app.log.1 features.npy
mkdir -p restore
tar xzf backup.tgz -C restore

# .bin files the system has (firmware, documentation examples), and the node binary.
find /usr/share/doc /usr/lib/firmware -name '*.bin' -type f 2>/dev/null | head -n 5 | while read -r f; do
    cat "$f" >/dev/null
done
cat /usr/bin/node >/dev/null
echo "workday done"
