#!/usr/bin/env bash
# `moetier serve` throughput against concurrency (issue 13): starts the server on MODEL, then runs rounds
# of 1, 2, 4, 8 concurrent requests (each its own short prompt, -n generated tokens, temperature 0) and
# prints, per round: total decode tokens/s (tokens of decode steps / engine seconds in decode steps,
# from /metrics); the end-to-end rate (all generated tokens / the round's wall time, prefill included),
# both also as a ratio to concurrency 1 of the same run; the server's CPU seconds per generated token
# (user + system, all threads: steadier than wall time on a shared machine); and, when the tier options
# stream experts, the expert bytes read per generated token (moetier_tier_bytes_read_total /
# moetier_generated_tokens_total deltas) and the expert cache's requests per generated token: hits,
# reads a prefetch had started, misses (one request per streamed expert per layer per step, however
# many of the step's sequences chose it).
#
#   perf/serve_bench.sh MODEL [--ram-budget SIZE] [-t N] [-np N] [-n TOKENS] [--conc 1,2,4,8] [--build DIR]
#                       [-- extra `moetier serve` options]
#
# Defaults: -t 0 (one thread per core), -np 8, -n 64, --conc 1,2,4,8, --build build. The server gets
# -c np x 512. One unreported warm-up request of -n tokens comes first. See perf/README.md
# ("serve_bench").
set -euo pipefail

[[ $# -ge 1 && $1 != -* ]] || { sed -n '2,18p' "$0"; exit 2; }
model=$1
shift
build=build
threads=0
np=8
n=64
conc=1,2,4,8
serve_extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ram-budget) serve_extra+=(--ram-budget "$2"); shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -np) np=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    --conc) conc=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --) shift; serve_extra+=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "serve_bench: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x $build/moetier ]] || { echo "serve_bench: $build/moetier not built (ninja -C $build moetier)" >&2; exit 1; }
[[ -f $model ]] || { echo "serve_bench: $model: no such file" >&2; exit 1; }

exec python3 - "$build/moetier" "$model" "$threads" "$np" "$n" "$conc" "${serve_extra[@]}" <<'PYEOF'
import http.client, json, os, re, signal, subprocess, sys, threading, time

moetier, model, threads, np_, n, conc = sys.argv[1:7]
extra = sys.argv[7:]
np_, n = int(np_), int(n)
concs = [int(c) for c in conc.split(",")]
if max(concs) > np_:
    sys.exit(f"serve_bench: concurrency {max(concs)} is above -np {np_}")
PROMPTS = ["The history of the Roman Empire", "How to bake bread at home:", "Once upon a time, in a small village,",
           "The main ideas of quantum mechanics are", "def fibonacci(n):", "A recipe for tomato soup:",
           "The best way to learn a language is", "In 1969, the first humans", "Photosynthesis is the process",
           "Dear hiring manager,", "The rules of chess:", "Ten facts about octopuses:"]

cmd = [moetier, "serve", "-m", model, "--port", "0", "-np", str(np_), "-c", str(np_ * 512), "-t", threads, *extra]
print("serve_bench:", " ".join(cmd), flush=True)
t_load = time.monotonic()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
port = None
log = []
for raw in proc.stderr:
    line = raw.decode("utf-8", "replace")
    log.append(line)
    sys.stderr.write("  server: " + line)
    m = re.search(r"serving .* on http://[^:]+:(\d+) ", line)
    if m:
        port = int(m.group(1))
        break
if port is None:
    sys.exit("serve_bench: the server did not start")
threading.Thread(target=lambda: [log.append(l.decode("utf-8", "replace")) for l in proc.stderr], daemon=True).start()
print(f"serve_bench: server up in {time.monotonic() - t_load:.1f} s", flush=True)


def metrics():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", "/metrics")
    out = {}
    for line in c.getresponse().read().decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[re.sub(r"\{.*\}", "", k)] = float(v)
    c.close()
    return out


def one(i, res, prompt):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        res[i] = f"HTTP {r.status}: {data[:200]!r}"
        return
    res[i] = json.loads(data)["usage"]["completion_tokens"]


def cpu_seconds():
    """The server's user + system CPU time (it is shared with other work on a busy machine: per token,
    CPU time moves less than wall time)."""
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def round_(k, offset):
    res = [None] * k
    ts = [threading.Thread(target=one, args=(i, res, PROMPTS[(offset + i) % len(PROMPTS)])) for i in range(k)]
    m0 = metrics()
    c0 = cpu_seconds()
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - t0
    cpu = cpu_seconds() - c0
    m1 = metrics()
    bad = [r for r in res if not isinstance(r, int)]
    if bad:
        sys.exit(f"serve_bench: {bad[0]}")
    d = {key: m1.get(key, 0) - m0.get(key, 0) for key in m1}
    return wall, cpu, d


try:
    round_(1, len(PROMPTS) - 1)  # warm-up (page cache, expert cache), not reported
    rows = []
    base = None
    print(f"{'streams':>7} {'tokens':>7} {'wall s':>7} {'decode tok/s':>12} {'x c=1':>6} {'e2e tok/s':>9} {'x c=1':>6} "
          f"{'steps':>6} {'CPU s/tok':>9} {'expert MiB/token':>16} {'hit/tok':>7} {'pref/tok':>8} {'miss/tok':>8}", flush=True)
    for k in concs:
        wall, cpu, d = round_(k, 0)
        gen = d["moetier_generated_tokens_total"]
        dec_tokens = gen - d["moetier_requests_total"]  # the first token of a request comes from its prefill
        dec = dec_tokens / d["moetier_decode_seconds_total"] if d["moetier_decode_seconds_total"] > 0 else 0
        e2e = gen / wall
        if base is None:
            base = (dec, e2e)
        tier = d.get("moetier_tier_bytes_read_total")
        mib = f"{tier / gen / 2**20:16.1f}" if tier is not None and gen else f"{'-':>16}"
        hits = d.get("moetier_expert_cache_hits_total")
        pref = d.get("moetier_expert_cache_prefetched_total")
        miss = d.get("moetier_expert_cache_misses_total")
        hm = (f"{hits / gen:7.1f} {pref / gen:8.1f} {miss / gen:8.1f}") if hits is not None and gen else f"{'-':>7} {'-':>8} {'-':>8}"
        print(f"{k:7d} {gen:7.0f} {wall:7.1f} {dec:12.2f} {dec / base[0]:6.2f} {e2e:9.2f} {e2e / base[1]:6.2f} "
              f"{d['moetier_decode_steps_total']:6.0f} {cpu / gen:9.3f} {mib} {hm}", flush=True)
finally:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
errs = [l for l in log if "error" in l.lower()]
if errs:
    sys.exit("serve_bench: server errors:\n" + "".join(errs))
PYEOF
