#!/usr/bin/env bash
# moetier bench against a peer's llama-bench (ik_llama.cpp or llama.cpp) on the same GGUF file, the same
# threads and test sizes, in alternating runs; prints pp/tg tokens/s per round and engine, the ratios
# moetier/peer per round and for the medians, and moetier's decode roofline ratio. See perf/README.md.
#
#   perf/vs_peer.sh MODEL --peer-bench PATH/llama-bench [-t N] [-p 512] [-n 64] [-r 1] [--rounds 2]
#                   [--build build] [--moetier-args "--no-mmap"] [--peer-args "-rtr 1"]
#
# Each round runs `moetier bench -m MODEL -p P -n N -r R -t T --json` and
# `llama-bench -m MODEL -p P -n N -r R -t T -o json`; moetier goes first in odd rounds, the peer in even
# ones. -t defaults to nproc so both engines get the same explicit thread count. Per round, the figure
# of each engine is the mean it reports over its R repetitions.
set -euo pipefail

die() { echo "vs_peer: error: $*" >&2; exit 1; }

model=""
peer=""
build=build
threads=$(nproc)
prompt=512
gen=64
reps=1
rounds=2
moetier_args=""
peer_args=""
count() {  # count OPTION VALUE: VALUE if it is a whole number, else fail
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 '$2': expected a whole number"
  echo "$2"
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --peer-bench|--build|-t|-p|-n|-r|--rounds|--moetier-args|--peer-args) [[ $# -ge 2 ]] || die "$1 needs a value" ;;&
    --moetier-args) moetier_args=$2; shift 2 ;;
    --peer-args) peer_args=$2; shift 2 ;;
    --peer-bench) peer=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    -t) threads=$(count "$1" "$2"); shift 2 ;;
    -p) prompt=$(count "$1" "$2"); shift 2 ;;
    -n) gen=$(count "$1" "$2"); shift 2 ;;
    -r) reps=$(count "$1" "$2"); shift 2 ;;
    --rounds) rounds=$(count "$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z $model ]] || die "a second MODEL '$1' (one model per run)"; model=$1; shift ;;
  esac
done
[[ -n $model ]] || die "no MODEL given (perf/vs_peer.sh MODEL --peer-bench PATH/llama-bench)"
[[ -f $model ]] || die "model file '$model' not found"
[[ -n $peer ]] || die "no --peer-bench PATH/llama-bench given"
[[ -f $peer && -x $peer ]] || die "peer binary '$peer' not found or not executable"
moetier=$build/moetier
[[ -x $moetier ]] || die "$moetier not built (bash scripts/build.sh, or --build DIR)"
(( threads >= 1 && reps >= 1 && rounds >= 1 )) || die "-t, -r and --rounds must be >= 1"
(( prompt + gen > 0 )) || die "-p 0 and -n 0 leave nothing to measure"

work=$(mktemp -d "${TMPDIR:-/tmp}/moetier-vs-peer-XXXXXX")
trap 'rm -rf "$work"' EXIT

run_engine() {  # run_engine moetier|peer ROUND: JSON on $work/ROUND.ENGINE.json, stderr on .err
  local out=$work/$2.$1 cmd
  if [[ $1 == moetier ]]; then
    # shellcheck disable=SC2206  # extra options are split into words on purpose
    cmd=("$moetier" bench -m "$model" -p "$prompt" -n "$gen" -r "$reps" -t "$threads" --json $moetier_args)
  else
    # shellcheck disable=SC2206
    cmd=("$peer" -m "$model" -p "$prompt" -n "$gen" -r "$reps" -t "$threads" -o json $peer_args)
  fi
  echo "== round $2: ${cmd[*]}" >&2
  if ! "${cmd[@]}" >"$out.json" 2>"$out.err"; then
    tail -n 5 "$out.err" >&2
    die "$1 failed in round $2 (the last lines of its stderr are above): ${cmd[*]}"
  fi
}

for ((r = 1; r <= rounds; ++r)); do
  if (( r % 2 == 1 )); then run_engine moetier "$r"; run_engine peer "$r"
  else run_engine peer "$r"; run_engine moetier "$r"; fi
done

python3 - "$work" "$rounds" "$prompt" "$gen" "$model" "$threads" "$reps" "$moetier_args" "$peer_args" <<'EOF'
import json, statistics, sys
work, rounds, P, N, model, threads, reps, margs, pargs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:]

def moetier(r):  # -> (pp, tg, decode roofline ratio)
    j = json.load(open(f"{work}/{r}.moetier.json"))
    t = {x["test"]: x for x in j["tests"]}
    tg = t.get(f"tg{N}", {})
    return t.get(f"pp{P}", {}).get("tokens_per_s"), tg.get("tokens_per_s"), tg.get("ratio_to_roofline")

peer_info = ""
def peer(r):  # -> (pp, tg); llama-bench -o json: a list of tests with n_prompt, n_gen, avg_ts
    global peer_info
    tests = json.load(open(f"{work}/{r}.peer.json"))
    if tests: peer_info = f"{tests[0].get('build_commit', '?')} (build {tests[0].get('build_number', '?')}), {tests[0].get('cpu_info', '?')}"
    pick = lambda p, n: next((x["avg_ts"] for x in tests if x["n_prompt"] == p and x["n_gen"] == n), None)
    return pick(P, 0), pick(0, N)

rows = [(r, moetier(r), peer(r)) for r in range(1, rounds + 1)]
f = lambda v: "-" if v is None else f"{v:.2f}"
ratio = lambda a, b: "-" if a is None or not b else f"{a / b:.2f}x"
med = lambda vs: None if any(v is None for v in vs) else statistics.median(vs)

print(f"model {model}  threads {threads}  -p {P} -n {N} -r {reps}  rounds {rounds}")
print(f"peer: {peer_info}")
print(f"moetier options: {margs or '(defaults)'}; peer options: {pargs or '(defaults)'}; moetier weights: "
      f"{json.load(open(f'{work}/1.moetier.json')).get('weights_memory', '?')}")
print(f"| round | engine | pp{P} t/s | tg{N} t/s | decode / roofline |")
print("|---|---|---|---|---|")
for label, (mpp, mtg, roof), (ppp, ptg) in rows + [
        ("median", tuple(med([x[1][i] for x in rows]) for i in range(3)), tuple(med([x[2][i] for x in rows]) for i in range(2)))]:
    print(f"| {label} | moetier | {f(mpp)} | {f(mtg)} | {f(roof)} |")
    print(f"| {label} | peer | {f(ppp)} | {f(ptg)} | |")
    print(f"| {label} | moetier/peer | {ratio(mpp, ppp)} | {ratio(mtg, ptg)} | |")
EOF
