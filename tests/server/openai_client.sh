#!/usr/bin/env bash
# Test: the official OpenAI Node.js client (npm `openai`, pinned in openai_client/package.json) and curl
# against `moetier serve` on a tiny synth model. Installs the client into OPENAI_CLIENT_DIR (the build
# folder), never into the sources. Skips (exit 77) only where Node.js is absent.
set -euo pipefail
: "${MOETIER_BIN:?}" "${OPENAI_CLIENT_DIR:?}"
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "skipped: Node.js / npm are not installed (the OpenAI client test needs them)"
  exit 77
fi
mkdir -p "$OPENAI_CLIENT_DIR"
cp "$here/openai_client/package.json" "$here/openai_client/package-lock.json" "$here/openai_client/client.mjs" "$OPENAI_CLIENT_DIR/"
if ! cmp -s "$here/openai_client/package-lock.json" "$OPENAI_CLIENT_DIR/node_modules/.installed-lock" 2>/dev/null; then
  (cd "$OPENAI_CLIENT_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/openai_client/package-lock.json" "$OPENAI_CLIENT_DIR/node_modules/.installed-lock"
fi

tmp=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$MOETIER_BIN" synth --preset tiny-qwen3moe --type Q8_0 --seed 4 -o "$tmp/m.gguf" >/dev/null
"$MOETIER_BIN" serve -m "$tmp/m.gguf" --port 0 -np 2 -c 1024 --api-key sk-moetier-test --alias tiny 2>"$tmp/log" &
server_pid=$!
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving .* on http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$tmp/log")
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/log"; echo "FAIL: the server exited"; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$tmp/log"; echo "FAIL: the server did not start"; exit 1; }

node "$OPENAI_CLIENT_DIR/client.mjs" "http://127.0.0.1:$port/v1" sk-moetier-test

# SSE framing as curl sees it: "data: {json}" events separated by blank lines, ending with [DONE].
curl -sSN -H "Authorization: Bearer sk-moetier-test" "http://127.0.0.1:$port/v1/completions" \
  -d '{"prompt": "Hello", "max_tokens": 6, "temperature": 0, "stream": true}' >"$tmp/sse"
python3 - "$tmp/sse" <<'PY'
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
assert raw.endswith("data: [DONE]\n\n"), "stream ends with data: [DONE]"
events = raw.split("\n\n")[:-1]
assert len(events) >= 3, f"events: {len(events)}"
for e in events[:-1]:
    assert e.startswith("data: ") and "\n" not in e, f"framing: {e!r}"
    j = json.loads(e[6:])
    assert j["object"] == "text_completion"
assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] in ("stop", "length")
print(f"curl: {len(events)} SSE events, well-formed")
PY
# /health needs no key; /metrics counts what ran.
curl -sSf "http://127.0.0.1:$port/health" | grep -q '"ok"'
curl -sSf -H "Authorization: Bearer sk-moetier-test" "http://127.0.0.1:$port/metrics" >"$tmp/metrics"
grep -q '^moetier_requests_total [1-9]' "$tmp/metrics" || { cat "$tmp/metrics"; echo "FAIL: metrics"; exit 1; }
kill -TERM "$server_pid"
wait "$server_pid" || { cat "$tmp/log"; echo "FAIL: the server's exit status after SIGTERM"; exit 1; }
server_pid=
grep -q "server stopped" "$tmp/log"
if grep -qi "error" "$tmp/log"; then cat "$tmp/log"; echo "FAIL: an error in the server log"; exit 1; fi
echo "openai_client: passed"
