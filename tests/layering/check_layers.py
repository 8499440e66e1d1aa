#!/usr/bin/env python3
"""Layering check: arrows point down only (../shared/DESIGN.md, "Layers and who may call whom").

Every library still sees the repository root as its include directory (giving each library its own
include root would mean rewriting every #include in the tree), so the compiler does not stop a layer from
including a header of a layer above it. This check does:

1. every `#include "..."` (and `#include <layer/...>`) in common/ cpu/ kernels/ scheduler/ offload/
   runtime/ must name a header of a layer the including layer may use (ALLOWED), or be listed in
   EXCEPTIONS with a reason; a listed exception that no longer occurs is an error too, so the list only
   shrinks;
2. the Meson files of each layer may only name the *_dep of layers it may use, so an unused link such as
   offload -> scheduler does not come back.

Usage: check_layers.py [ROOT]   (default: the repository root this file lives in)
       check_layers.py --self-test
Prints one line per problem, "path:line: what", and exits 1 when there is any.
"""
import os
import re
import sys
import tempfile

LAYERS = ("common", "cpu", "kernels", "scheduler", "offload", "runtime")

# Who may include whom (each layer may always include itself).
ALLOWED = {
    "common": {"common"},
    "cpu": {"common"},
    "kernels": {"common"},
    "scheduler": {"common", "cpu", "kernels"},
    "offload": {"common"},
    "runtime": {"common", "scheduler", "offload"},
}

# (including file, included header, why it is allowed for now). Remove a line when its include goes.
EXCEPTIONS = [
    ("runtime/models/model.hpp", "cpu/ops.hpp",
     "attention of the non-expert path: only the MoE path is behind the ExpertBackend seam (issue 9)"),
    ("runtime/models/model.cpp", "cpu/ops.hpp",
     "attention and norms of the non-expert path (no backend seam for them yet)"),
    ("runtime/models/model.cpp", "cpu/prefill_gemm.hpp",
     "kPrefillTileRows: the prefill row tile the forward chunks by"),
    ("runtime/models/gqa_model.cpp", "cpu/ops.hpp",
     "norms, RoPE and sink / sliding-window attention of grouped-query attention (no backend seam for them yet)"),
    ("runtime/models/arch_deepseek2.cpp", "cpu/ops.hpp",
     "norms and RoPE of MLA attention (no backend seam for them yet)"),
    ("runtime/tuning/calibrate.cpp", "cpu/ops.hpp",
     "`moetier calibrate` times cpu::attention and cpu::rms_norm themselves (per-token overheads)"),
    ("runtime/cli/cli_bench.cpp", "cpu/onednn_matmul.hpp",
     "`moetier bench` measures the oneDNN matmul itself"),
    ("runtime/synth/synth_fill.cpp", "cpu/quant_blocks.hpp",
     "ggml block layouts to write quantised synthetic weights (format knowledge; could move to common/)"),
    ("runtime/synth/synth_fill.cpp", "cpu/iq_blocks.hpp",
     "the IQ block layouts, for valid random IQ blocks (format knowledge, as quant_blocks.hpp)"),
]

SOURCE_EXTS = (".hpp", ".cpp", ".h", ".hh", ".cc", ".cu", ".cuh", ".inc", ".ipp")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
DEP_RE = re.compile(r"\b(" + "|".join(LAYERS) + r")_dep\b")


def layer_of(relpath):
    first = relpath.split("/", 1)[0]
    return first if first in LAYERS else None


def resolve(root, including, spec, quoted):
    """Repository-relative path of the header `spec` included from `including`, or None when it is not a
    file of the tree (a system header)."""
    if layer_of(spec) and os.path.isfile(os.path.join(root, spec)):
        return os.path.normpath(spec)
    if quoted:
        local = os.path.normpath(os.path.join(os.path.dirname(including), spec))
        if os.path.isfile(os.path.join(root, local)):
            return local
    return None


def check(root, allowed=ALLOWED, exceptions=EXCEPTIONS):
    """Returns the problems as (path, line, message), sorted."""
    problems = []
    used = set()
    excepted = {(f, h) for f, h, _ in exceptions}
    for layer in LAYERS:
        top = os.path.join(root, layer)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                if name == "meson.build":
                    problems += check_meson(root, path, layer, allowed)
                if not name.endswith(SOURCE_EXTS):
                    continue
                with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
                    for n, text in enumerate(f, 1):
                        m = INCLUDE_RE.match(text)
                        if not m:
                            continue
                        quoted, spec = m.group(1) == '"', m.group(2).strip()
                        target = resolve(root, path, spec, quoted)
                        if target is None:
                            if quoted:
                                problems.append((path, n, f'#include "{spec}" names no file of the tree'))
                            continue
                        target = target.replace(os.sep, "/")
                        to = layer_of(target)
                        if to is None or target.startswith(".."):
                            problems.append((path, n, f"layer '{layer}' includes '{target}', outside the library layers"))
                        elif to != layer and to not in allowed[layer]:
                            if (path, target) in excepted:
                                used.add((path, target))
                                continue
                            ok = ", ".join(sorted(allowed[layer] | {layer}))
                            problems.append((path, n, f"layer '{layer}' may not include '{target}' (layer '{to}'; "
                                                      f"allowed: {ok}; see ../shared/DESIGN.md)"))
    for f, h, _ in exceptions:
        if (f, h) not in used:
            problems.append((f, 0, f"stale exception: it no longer includes '{h}'; remove the line from "
                                   f"tests/layering/check_layers.py EXCEPTIONS"))
    return sorted(problems)


def check_meson(root, path, layer, allowed):
    """A layer's meson.build may only name the *_dep of itself and of layers it may use."""
    out = []
    with open(os.path.join(root, path), encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            code = text.split("#", 1)[0]
            for m in DEP_RE.finditer(code):
                to = m.group(1)
                if to != layer and to not in allowed[layer]:
                    out.append((path, n, f"layer '{layer}' links '{to}_dep', a layer it may not use"))
    return out


def self_test():
    """Runs check() on small trees: each case is (files {path: text}, exceptions, expected problems as
    (path, line, substring))."""
    cases = [
        ("allowed includes", {"cpu/a.cpp": '#include "common/e.hpp"\n#include <vector>\n',
                              "common/e.hpp": "", "runtime/r.cpp": '#include "scheduler/s.hpp"\n',
                              "scheduler/s.hpp": '#include "cpu/a.hpp"\n', "cpu/a.hpp": ""}, [], []),
        ("upward include", {"offload/a.cpp": '// x\n#include "scheduler/s.hpp"\n', "scheduler/s.hpp": ""}, [],
         [("offload/a.cpp", 2, "layer 'offload' may not include 'scheduler/s.hpp'")]),
        ("angle brackets", {"cpu/a.cpp": "#include <runtime/r.hpp>\n", "runtime/r.hpp": ""}, [],
         [("cpu/a.cpp", 1, "may not include 'runtime/r.hpp'")]),
        ("relative path", {"common/a.hpp": '#include "../cpu/b.hpp"\n', "cpu/b.hpp": ""}, [],
         [("common/a.hpp", 1, "may not include 'cpu/b.hpp'")]),
        ("same folder", {"offload/a.cpp": '#include "a.hpp"\n', "offload/a.hpp": ""}, [], []),
        ("outside the layers", {"cpu/a.cpp": '#include "../tests/t.hpp"\n', "tests/t.hpp": ""}, [],
         [("cpu/a.cpp", 1, "outside the library layers")]),
        ("missing header", {"kernels/a.cu": '  #  include "kernels/none.hpp"\n'}, [],
         [("kernels/a.cu", 1, "names no file")]),
        ("kernels above scheduler", {"kernels/k.cpp": '#include "scheduler/s.hpp"\n', "scheduler/s.hpp": ""}, [],
         [("kernels/k.cpp", 1, "may not include")]),
        ("exception used", {"runtime/m.cpp": '#include "cpu/ops.hpp"\n', "cpu/ops.hpp": ""},
         [("runtime/m.cpp", "cpu/ops.hpp", "why")], []),
        ("exception stale", {"runtime/m.cpp": "\n", "cpu/ops.hpp": ""},
         [("runtime/m.cpp", "cpu/ops.hpp", "why")], [("runtime/m.cpp", 0, "stale exception")]),
        ("meson link", {"offload/meson.build": "# scheduler_dep in a comment\nx = [common_dep, scheduler_dep]\n"}, [],
         [("offload/meson.build", 2, "links 'scheduler_dep'")]),
    ]
    failures = 0
    for name, files, exceptions, expected in cases:
        with tempfile.TemporaryDirectory() as root:
            for p, text in files.items():
                os.makedirs(os.path.join(root, os.path.dirname(p)), exist_ok=True)
                with open(os.path.join(root, p), "w", encoding="utf-8") as f:
                    f.write(text)
            got = check(root, ALLOWED, exceptions)
        ok = len(got) == len(expected) and all(
            g[0] == e[0] and g[1] == e[1] and e[2] in g[2] for g, e in zip(got, expected))
        if not ok:
            failures += 1
            print(f"self-test '{name}': expected {expected}, got {got}")
    print(f"self-test: {len(cases) - failures} of {len(cases)} cases pass")
    return 1 if failures else 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        return self_test()
    root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    problems = check(root)
    for path, line, msg in problems:
        print(f"{path}:{line}: {msg}" if line else f"{path}: {msg}", file=sys.stderr)
    if problems:
        print(f"check_layers: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("check_layers: every include and Meson link points down")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
