#!/usr/bin/env python3
"""Sums doctest's per-executable counts from meson's testlog.json files and prints one closing line:
'tests: N passed, N failed, N skipped' (test cases), after a per-executable table."""
import json, re, sys

pat = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped")
tot = [0, 0, 0]
bad_exe = 0
for path in sys.argv[1:]:
    label = "asan" if "asan" in path else "release"
    for line in open(path):
        rec = json.loads(line)
        out = rec.get("stdout", "") or ""
        m = pat.findall(out)
        if m:
            _, p, f, s = map(int, m[-1])
        else:
            # A test that is not a doctest executable (a script) counts as one case: passed, skipped (exit
            # status 77, e.g. no Node.js for the OpenAI client test) or failed.
            r = rec.get("result")
            p, f, s = (1, 0, 0) if r == "OK" else (0, 0, 1) if r == "SKIP" else (0, 1, 0)
        if rec.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL"):
            bad_exe += 1
            if f == 0:
                f = 1
        tot[0] += p; tot[1] += f; tot[2] += s
        print(f"  [{label}] {rec['name']:<28} {rec.get('result'):<8} passed {p:>4}  failed {f:>3}  skipped {s:>3}")
print(f"tests: {tot[0]} passed, {tot[1]} failed, {tot[2]} skipped")
sys.exit(1 if tot[1] or bad_exe else 0)
