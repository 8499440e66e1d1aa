#!/usr/bin/env python3
"""`moetier serve` under load and under hostile clients (issue 13). Python 3 standard library only.

Starts the built binary (MOETIER_BIN, default build/moetier) on a tiny synth model made in a temporary
folder, on a free port (--port 0; the port is read from the "serving ... on http://HOST:PORT" line), and:
  load       8 clients x 20 requests (chat / completion, streamed / not, greedy / seeded, stop strings):
             every response complete and well formed (JSON, SSE framing, finish_reason, usage), and its
             text the one the same request gets alone (batched decode does not depend on the batch);
             p50/p99 latency and generated tokens/s printed; RSS after the load within 1.2x + 16 MiB of
             RSS after a warm-up; nothing with "error" on the server's stderr.
  hostile    malformed JSON, bodies over the 8 MiB limit, wrong types and out-of-range values for every
             field, invalid UTF-8, unknown roles and endpoints, wrong methods, broken HTTP, 1,000
             connections opened at once and dropped (some half-sent): each gets OpenAI's error shape
             with the right status (or the connection is closed), and the server keeps serving.
  api key    a second server with --api-key: a missing or wrong key gets 401; a third one on the same
             port fails with "cannot bind".
  queue      a server with -np 1 --queue 1: concurrent long requests get 503 with Retry-After; with
             -np 2 --queue 0 two requests run; with the slots and the queue full, /metrics still answers.
  prefill    prompts longer than -b (chunked prefill between decode steps) give the text they give alone.
  disconnect a client that closes its connection (streamed, and non-streamed) cancels its generation:
             requests_in_flight goes back to 0 and far fewer tokens than max_tokens are generated.
Exit status 0 when every check passed; otherwise every failed check is printed and the status is 1.
"""
import http.client
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("MOETIER_BIN", "build/moetier")
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print(f"FAIL: {what}", flush=True)
    return cond


# ---------------------------------------------------------------------------------------------- server

class Server:
    """One `moetier serve` process; its stderr is collected by a thread."""

    def __init__(self, model, *args):
        self.args = args
        self.proc = subprocess.Popen([BIN, "serve", "-m", model, "--port", "0", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines = []
        self.port = None
        ready = threading.Event()

        def drain():
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                m = re.search(r"serving .* on http://[^:]+:(\d+) ", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=drain, daemon=True)
        self.reader.start()
        ready.wait(120)
        if self.port is None:
            self.proc.kill()
            raise SystemExit(f"moetier serve {' '.join(args)} did not start: {self.stderr()}")

    def stderr(self):
        return "".join(self.lines)

    def alive(self):
        return self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def metrics(self, headers=None):
        st, _, body = call(self.port, "GET", "/metrics", headers=headers)
        check(st == 200, f"/metrics answered {st}")
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_idle(self, timeout):
        """Seconds until requests_in_flight and queue_length are 0, or None after `timeout` seconds."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            m = self.metrics()
            if m.get("moetier_requests_in_flight") == 0 and m.get("moetier_queue_length") == 0:
                return time.monotonic() - t0
            time.sleep(0.05)
        return None

    def stop(self):
        """SIGTERM; the server must stop cleanly (status 0, "server stopped") within 30 s."""
        if not check(self.alive(), f"server {self.args} is alive at the end"):
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        self.reader.join(5)
        check(rc == 0, f"server {self.args} exited with {rc} on SIGTERM")
        err = self.stderr()
        check("server stopped" in err, f"server {self.args} said 'server stopped': {err[-500:]}")
        for bad in ("terminate called", "Sanitizer", "Segmentation", "Aborted", "assert"):
            check(bad not in err, f"server {self.args} stderr has '{bad}': {err[-2000:]}")


# ------------------------------------------------------------------------------------------------ HTTP

def call(port, method, path, body=None, headers=None, timeout=60):
    """One request on a fresh connection: (status, lower-cased headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def raw_exchange(port, data, timeout=20, chunks=None, half_close=False):
    """Sends raw bytes (then `chunks` one by one; then, with `half_close`, shuts down the sending side:
    the request ends there) and reads one HTTP response, or until the server closes. Returns (status or
    None, headers, body, note). A timeout (the server neither answers nor closes) is status 'hang'."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    note = ""
    try:
        try:
            s.sendall(data)
            for c in chunks or []:
                s.sendall(c)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError) as e:
            note = f"send: {type(e).__name__}"
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return None, {}, buf, note + " closed"
                buf += d
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            if "content-length" in hdrs:
                n = int(hdrs["content-length"])
                while len(body) < n:
                    d = s.recv(65536)
                    if not d:
                        break
                    body += d
            elif hdrs.get("transfer-encoding") == "chunked":
                while not body.endswith(b"0\r\n\r\n"):
                    d = s.recv(65536)
                    if not d:
                        break
                    body += d
                body = dechunk(body)
            return status, hdrs, body, note
        except ConnectionResetError:
            return None, {}, buf, note + " reset"
        except socket.timeout:
            return "hang", {}, buf, note
    finally:
        s.close()


def dechunk(b):
    out = b""
    while b:
        size_line, _, rest = b.partition(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        if n == 0:
            break
        out += rest[:n]
        b = rest[n + 2:]
    return out


def error_ok(status, headers, body, want, param=None, what=""):
    """An answer in OpenAI's error shape with status `want` (a set allowed) and, given, that `param`."""
    wants = want if isinstance(want, (set, tuple)) else {want}
    if not check(status in wants, f"{what}: status {status}, expected {wants}: {body[:300]!r}"):
        return False
    check(headers.get("content-type", "").startswith("application/json"), f"{what}: content-type {headers.get('content-type')}")
    try:
        j = json.loads(body)
    except ValueError:
        return check(False, f"{what}: error body is not JSON: {body[:300]!r}")
    e = j.get("error") if isinstance(j, dict) else None
    ok = (isinstance(j, dict) and set(j) == {"error"} and isinstance(e, dict) and set(e) == {"message", "type", "param", "code"}
          and isinstance(e["message"], str) and e["message"] and isinstance(e["type"], str)
          and (e["param"] is None or isinstance(e["param"], str)) and (e["code"] is None or isinstance(e["code"], str)))
    check(ok, f"{what}: not OpenAI's error shape: {body[:300]!r}")
    if ok and param is not None:
        check(e["param"] == param, f"{what}: param {e['param']!r}, expected {param!r}")
    if ok:
        check(e["type"] == ("server_error" if status >= 500 else "invalid_request_error"), f"{what}: type {e['type']}")
    return ok


# ---------------------------------------------------------------------------------------- OpenAI shapes

def parse_sse(raw, what):
    """SSE framing of an OpenAI stream: events 'data: <one line>\\n\\n' (or ': comment\\n\\n'), the last
    one 'data: [DONE]'. Returns the JSON chunks, or None when the framing is broken."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        check(False, f"{what}: the stream is not UTF-8")
        return None
    if not check(text.endswith("\n\n"), f"{what}: the stream does not end with a blank line: {text[-200:]!r}"):
        return None
    events = text[:-2].split("\n\n")
    chunks = []
    for i, ev in enumerate(events):
        if ev.startswith(":"):
            check("\n" not in ev, f"{what}: multi-line comment {ev!r}")
            continue
        if not check(ev.startswith("data: ") and "\n" not in ev, f"{what}: malformed SSE event {ev[:200]!r}"):
            return None
        payload = ev[len("data: "):]
        if payload == "[DONE]":
            check(i == len(events) - 1, f"{what}: events after [DONE]")
            return chunks
        try:
            chunks.append(json.loads(payload))
        except ValueError:
            check(False, f"{what}: event is not JSON: {payload[:200]!r}")
            return None
    check(False, f"{what}: no 'data: [DONE]' at the end")
    return None


def check_usage(u, max_tokens, finish, what):
    ok = (isinstance(u, dict) and all(isinstance(u.get(k), int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
          and u["prompt_tokens"] > 0 and 1 <= u["completion_tokens"] <= max_tokens
          and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"])
    check(ok, f"{what}: usage {u}")
    if ok and finish == "length":
        check(u["completion_tokens"] == max_tokens, f"{what}: finish 'length' with {u['completion_tokens']} of {max_tokens} tokens")
    return ok


def read_answer(status, body, chat, stream, max_tokens, include_usage, what):
    """Validates a 200 answer; returns (text, finish_reason, completion_tokens or None)."""
    if not check(status == 200, f"{what}: status {status}: {body[:300]!r}"):
        return None
    obj = ("chat.completion.chunk" if stream else "chat.completion") if chat else "text_completion"
    prefix = "chatcmpl-" if chat else "cmpl-"
    if not stream:
        try:
            j = json.loads(body)
        except ValueError:
            check(False, f"{what}: body is not JSON: {body[:300]!r}")
            return None
        if not check(isinstance(j, dict) and j.get("object") == obj and str(j.get("id", "")).startswith(prefix)
                     and isinstance(j.get("created"), int) and isinstance(j.get("choices"), list) and len(j["choices"]) == 1,
                     f"{what}: malformed completion {body[:300]!r}"):
            return None
        c = j["choices"][0]
        text = c["message"]["content"] if chat else c.get("text")
        if chat:
            check(c["message"].get("role") == "assistant", f"{what}: role {c['message'].get('role')}")
        check(isinstance(text, str), f"{what}: no text")
        check(c.get("finish_reason") in ("stop", "length"), f"{what}: finish_reason {c.get('finish_reason')}")
        check_usage(j.get("usage"), max_tokens, c.get("finish_reason"), what)
        return text, c.get("finish_reason"), j["usage"]["completion_tokens"]
    chunks = parse_sse(body, what)
    if chunks is None:
        return None
    ids = {ch.get("id") for ch in chunks}
    check(len(ids) == 1 and str(next(iter(ids))).startswith(prefix), f"{what}: chunk ids {ids}")
    check(all(ch.get("object") == obj for ch in chunks), f"{what}: chunk objects {[ch.get('object') for ch in chunks]}")
    usage = None
    if include_usage:
        last = chunks.pop() if chunks else {}
        check(last.get("choices") == [] and "usage" in last, f"{what}: no usage chunk at the end: {last}")
        usage = last.get("usage")
    finishes = [ch["choices"][0].get("finish_reason") for ch in chunks if ch.get("choices")]
    if not check(len(chunks) >= 1 and all(len(ch.get("choices", [])) == 1 for ch in chunks), f"{what}: chunks without one choice"):
        return None
    check(finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1]),
          f"{what}: finish_reason only on the last chunk: {finishes}")
    if chat:
        check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", f"{what}: first delta has no role")
        pieces = [ch["choices"][0]["delta"].get("content", "") for ch in chunks]
    else:
        pieces = [ch["choices"][0].get("text", "") for ch in chunks]
    n_pieces = sum(1 for p in pieces if p)
    check(n_pieces <= max_tokens, f"{what}: {n_pieces} text pieces for max_tokens {max_tokens}")
    n_gen = None
    if usage is not None and check_usage(usage, max_tokens, finishes[-1], what):
        n_gen = usage["completion_tokens"]
        check(n_pieces <= n_gen, f"{what}: {n_pieces} text pieces but completion_tokens {n_gen}")
    return "".join(pieces), finishes[-1], n_gen


# ------------------------------------------------------------------------------------------------ load

PROMPTS = ["Hello, who are you?", "Write a haiku about the sea.", "1, 2, 3, 4,", "The capital of France is"]
MAX_TOKENS = 16


def spec_body(chat, prompt, seeded, stream, include_usage=False, stop=None):
    b = {"model": "tiny", "max_tokens": MAX_TOKENS}
    if chat:
        b["messages"] = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": prompt}]
    else:
        b["prompt"] = prompt
    b.update({"temperature": 0.8, "seed": 1234, "top_k": 40} if seeded else {"temperature": 0})
    if stream:
        b["stream"] = True
        if include_usage:
            b["stream_options"] = {"include_usage": True}
    if stop:
        b["stop"] = [stop, "\u0001never\u0002"]
    return b


def ascii_stop(text):
    """An ASCII alphanumeric 3-gram from the second half of `text` (a stop string it must cut at)."""
    for i in range(len(text) // 2, len(text) - 2):
        s = text[i:i + 3]
        if s.isascii() and s.isalnum():
            return s
    return None


def test_load(srv):
    port = srv.port
    # The answer of every distinct request when it runs alone (greedy or seeded: deterministic).
    expected = {}
    for chat in (True, False):
        for p in PROMPTS:
            for seeded in (False, True):
                st, _, body = call(port, "POST", "/v1/chat/completions" if chat else "/v1/completions",
                                   spec_body(chat, p, seeded, False))
                r = read_answer(st, body, chat, False, MAX_TOKENS, False, f"alone {chat} {p!r} {seeded}")
                if r:
                    expected[(chat, p, seeded)] = r
    if not check(len(expected) == 16, "every request run alone answered"):
        return

    def one(c, i):
        chat = (c + i) % 2 == 0
        stream = (c + i // 2) % 2 == 0
        p = PROMPTS[(c * 7 + i) % len(PROMPTS)]
        seeded = (i % 3 == 2)
        include_usage = stream and i % 2 == 0
        text0, finish0, n0 = expected[(chat, p, seeded)]
        stop = ascii_stop(text0) if (not seeded and i % 5 == 4) else None
        what = f"client {c} request {i} (chat={chat} stream={stream} seeded={seeded} stop={stop!r})"
        t0 = time.monotonic()
        st, _, body = call(port, "POST", "/v1/chat/completions" if chat else "/v1/completions",
                           spec_body(chat, p, seeded, stream, include_usage, stop))
        dt = time.monotonic() - t0
        r = read_answer(st, body, chat, stream, MAX_TOKENS, include_usage, what)
        if r is None:
            return dt, 0
        text, finish, n = r
        if stop:
            cut = text0[:text0.find(stop)]
            check(text == cut and finish == "stop", f"{what}: {text!r} {finish}, expected {cut!r} stop")
        else:
            # Batched decode must not depend on the batch: the same text as the request alone.
            check(text == text0 and finish == finish0, f"{what}: {text!r} {finish}, alone {text0!r} {finish0}")
            if n is not None:
                check(n == n0, f"{what}: completion_tokens {n}, alone {n0}")
        return dt, (n if n is not None else (n0 if not stop else 0))

    def run_clients(n_clients, n_requests):
        lat, toks = [], []
        lock = threading.Lock()

        def client(c):
            for i in range(n_requests):
                dt, n = one(c, i)
                with lock:
                    lat.append(dt)
                    toks.append(n)

        ts = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return lat, toks, time.monotonic() - t0

    run_clients(8, 3)  # warm-up: every slot and HTTP thread used once
    rss0 = srv.rss_kib()
    gen0 = srv.metrics()["moetier_generated_tokens_total"]
    lat, toks, wall = run_clients(8, 20)
    rss1 = srv.rss_kib()
    gen1 = srv.metrics()["moetier_generated_tokens_total"]
    check(len(lat) == 160, f"{len(lat)} of 160 requests done")
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    print(f"load: 8 clients x 20 requests (max_tokens {MAX_TOKENS}) in {wall:.2f} s: latency p50 {p50 * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms; {gen1 - gen0:.0f} tokens generated, {(gen1 - gen0) / wall:.0f} tokens/s total "
          f"(responses' usage/expected counts {sum(toks)}); RSS {rss0} KiB after warm-up, {rss1} KiB after", flush=True)
    check(gen1 - gen0 >= sum(toks), f"/metrics generated {gen1 - gen0} tokens, the responses {sum(toks)}")
    check(rss1 <= 1.2 * rss0 + 16 * 1024, f"RSS grew from {rss0} KiB to {rss1} KiB under load")
    check(srv.wait_idle(10) is not None, "idle after the load")
    check("error" not in srv.stderr().lower(), f"server stderr after the load: {srv.stderr()}")
    # Keep-alive: several requests on one connection.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(3):
        conn.request("POST", "/v1/completions", body=json.dumps(spec_body(False, PROMPTS[0], False, i == 1)),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        read_answer(r.status, r.read(), False, i == 1, MAX_TOKENS, False, f"keep-alive request {i}")
    conn.close()
    return expected


# --------------------------------------------------------------------------------------------- hostile

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
MSGS = [{"role": "user", "content": "hi"}]


def bad_field_cases():
    """(path, body, param) that must get 400 naming `param`."""
    cases = []
    base_chat = {"messages": MSGS, "max_tokens": 4}
    base_comp = {"prompt": "hi", "max_tokens": 4}
    bad_values = {
        "model": [5, [], {}, True],
        "max_tokens": ["16", -1, 0, 1.5, 1e30, 2 ** 31, 2 ** 63, 2 ** 64, 10 ** 30, True, [], {}, 100000],
        "max_completion_tokens": ["16", -5, 0, 2.5, True],
        "temperature": ["1", -0.1, 2.5, 1e300, True, []],
        "top_p": ["1", 0, -1, 1.5, True],
        "top_k": ["1", -1, 0.5, True, 2 ** 40],
        "min_p": ["1", -0.1, 1.5, True],
        "seed": ["1", -1, 0.5, True, 2 ** 64],
        "n": [2, 0, -1, "1", 1.5, True],
        "stop": [5, [1], ["a", "b", "c", "d", "e"], [""], "", {}, True, [["a"]]],
        "stream": ["true", 1, 0, [], {}],
        "stream_options": ["x", 1, [], {"include_usage": "yes"}],
    }
    for key, values in bad_values.items():
        for v in values:
            for path, base in ((CHAT, base_chat), (COMP, base_comp)):
                b = dict(base)
                b[key] = v
                cases.append((path, b, key))
    cases += [
        (CHAT, {}, "messages"), (CHAT, {"messages": "hi"}, "messages"), (CHAT, {"messages": []}, "messages"),
        (CHAT, {"messages": {}}, "messages"), (CHAT, {"messages": [5]}, "messages[0]"),
        (CHAT, {"messages": [None]}, "messages[0]"),
        (CHAT, {"messages": [{"content": "x"}]}, "messages[0].role"),
        (CHAT, {"messages": [{"role": 5, "content": "x"}]}, "messages[0].role"),
        (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (CHAT, {"messages": [{"role": "", "content": "x"}]}, "messages[0].role"),
        (CHAT, {"messages": MSGS + [{"role": "user"}]}, "messages[1].content"),
        (CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (CHAT, {"messages": [{"role": "user", "content": {"text": "x"}}]}, "messages[0].content"),
        (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages[0].content"),
        (CHAT, {"messages": [{"role": "user", "content": [5]}]}, "messages[0].content"),
        (CHAT, {"messages": [{"role": "user", "content": "x " * 5000}]}, "messages"),  # beyond the slot's context
        (COMP, {}, "prompt"), (COMP, {"prompt": 5}, "prompt"), (COMP, {"prompt": ""}, "prompt"),
        (COMP, {"prompt": ["a", "b"]}, "prompt"), (COMP, {"prompt": [5]}, "prompt"), (COMP, {"prompt": None}, "prompt"),
        (COMP, {"prompt": "x " * 5000}, "prompt"),
        (COMP, {"prompt": "hi", "max_tokens": 600}, "max_tokens"),  # prompt + max_tokens beyond the slot's 512
    ]
    return cases


def test_hostile(srv, expected):
    port = srv.port
    # Wrong types and values of every field.
    for path, body, param in bad_field_cases():
        st, h, b = call(port, "POST", path, body)
        error_ok(st, h, b, 400, param, f"{path} {json.dumps(body)[:120]}")
    # Bodies that are not a JSON object, or not JSON, or not UTF-8.
    for body in [b"", b"{", b'{"messages": [', b"null", b"[]", b'"x"', b"5", b'{"prompt": "a",}', b"{'prompt': 'a'}",
                 b'{"prompt": "a\xff\xfe", "max_tokens": 4}', b'{"messages": [{"role": "user", "content": "\xc3\x28"}]}',
                 b'{"prompt": "\\ud800", "max_tokens": 4}', b'{"prompt": "a", "max_tokens": 4, "temperature": 1e400}',
                 b'{"prompt": "a", "max_tokens": 1e400}', b'{"prompt": "a", "seed": 123456789012345678901234567890}',
                 b'{"prompt": NaN}', b"\x00\x01\x02", "{\"prompt\": \"\u00e9\"}".encode("latin-1"),
                 b"[" * 100000 + b"]" * 100000, b'{"stop": ' + b"[" * 100000 + b"]" * 100000 + b', "prompt": "a"}']:
        for path in (CHAT, COMP):
            st, h, b = call(port, "POST", path, body)
            error_ok(st, h, b, 400, None, f"{path} body {body[:60]!r}")
    # Odd but valid text is answered.
    for path, body in [(COMP, {"prompt": "a\u0000b\u0001", "max_tokens": 4}), (COMP, {"prompt": "\U0001F600 \u00e9", "max_tokens": 4}),
                       (CHAT, {"messages": [{"role": "user", "content": ""}], "max_tokens": 4}),
                       (CHAT, {"messages": [{"role": "developer", "content": "x"}, {"role": "user", "content": "\ud83d\ude00"}],
                               "max_tokens": 4, "unknown_field": {"a": [1, 2]}}),
                       (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                               "max_tokens": 4, "n": 1, "stop": None, "seed": None})]:
        st, h, b = call(port, "POST", path, body)
        read_answer(st, b, path == CHAT, False, 4, False, f"{path} {json.dumps(body)[:80]}")
    # Unknown endpoints and wrong methods.
    for method, path in [("GET", "/v1/nope"), ("POST", "/v1/embeddings"), ("GET", "/"), ("POST", "/v1/models/x"),
                         ("GET", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("PUT", "/v1/completions"),
                         ("PATCH", "/health"), ("GET", "/v1/completions?x=1")]:
        st, h, b = call(port, method, path, b"{}" if method != "GET" else None)
        error_ok(st, h, b, {404, 405}, None, f"{method} {path}")
    # Bodies over the 8 MiB limit: 413 in OpenAI's shape, or the connection closed; never a hang.
    big = b'{"prompt": "' + b"a" * (9 << 20) + b'"}'
    req = f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(big)}\r\n\r\n"
    # A client that sends less than its Content-Length ends its side of the connection (shutdown): the
    # server would otherwise rightly wait for the rest, up to its read timeout (30 s).
    for what, data, chunks in [
        ("9 MiB body", req.encode() + big, None),
        ("9 MiB chunked body", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
         [b"%x\r\n%s\r\n" % (1 << 20, b"a" * (1 << 20)) for _ in range(9)] + [b"0\r\n\r\n"]),
        ("Content-Length 10^20", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n{}", None),
        ("Content-Length -5", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", None),
        ("Content-Length 9 MiB, 10 bytes sent", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 9437184\r\n\r\n0123456789",
         None)]:
        st, h, b, note = raw_exchange(port, data, chunks=chunks, half_close="Content-Length " in what)
        check(st != "hang", f"{what}: no answer and no close")
        if st is not None and st != "hang":
            error_ok(st, h, b, {400, 413}, None, what)
        print(f"hostile: {what}: {st if st is not None else 'connection closed'} {note}".rstrip(), flush=True)
    # Broken HTTP: an answer (400 / 414 / 431 / 505) or a close, never a hang.
    for what, data in [("garbage", b"HELLO\r\n\r\n"), ("binary", bytes(range(256)) * 4 + b"\r\n\r\n"),
                       ("100 KiB header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"),
                       ("100 KiB URI", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
                       ("HTTP/9.9", b"GET /health HTTP/9.9\r\n\r\n"),
                       ("bad chunk size", b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n")]:
        st, h, b, note = raw_exchange(port, data)
        check(st != "hang", f"{what}: no answer and no close")
        check(st is None or st == "hang" or 400 <= st < 600 or (what == "HTTP/9.9" and st == 200), f"{what}: status {st}")
        print(f"hostile: {what}: {st if st is not None else 'connection closed'} {note}".rstrip(), flush=True)
    check(srv.alive(), "server alive after the hostile requests")
    connection_storm(srv, expected)


def connection_storm(srv, expected, n=1000):
    """n connections open at the same time, then dropped: silent, half a request line, headers with half
    a body, a whole request never read; half closed with RST. The server must go on serving."""
    port = srv.port
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
    socks = [None] * n
    whole = json.dumps({"prompt": "hi", "max_tokens": 8}).encode()
    partial = [b"",
               b"POST /v1/chat/comp",
               b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\": ",
               b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
               % (len(whole), whole)]
    errors = []

    def opener(k):
        for i in range(k, n, 25):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=20)
                if partial[i % 4]:
                    s.sendall(partial[i % 4])
                socks[i] = s
            except OSError as e:
                errors.append(f"{i}: {e}")

    t0 = time.monotonic()
    ts = [threading.Thread(target=opener, args=(k,)) for k in range(25)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_open = time.monotonic() - t0
    opened = sum(s is not None for s in socks)
    for i, s in enumerate(socks):
        if s is None:
            continue
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
    check(opened == n, f"storm: {opened} of {n} connections opened ({errors[:3]})")
    # A backlog of 5 (httplib's default) makes connects wait for SYN retransmissions (1 s each).
    check(t_open < 8, f"storm: opening {n} connections took {t_open:.2f} s")
    # The storm's whole requests (a quarter) fill the slots and the queue for a moment (a request then
    # gets a 503, rightly); once they are done or cancelled the server answers, correctly.
    t1 = time.monotonic()
    idle = srv.wait_idle(30)
    check(idle is not None, "storm: requests_in_flight and the queue back to 0")
    for _ in range(20):  # requests of the storm not yet read by the server may still fill the queue
        st, h, body = call(port, "POST", COMP, {"prompt": PROMPTS[3], "max_tokens": MAX_TOKENS, "temperature": 0})
        if st != 503:
            break
        error_ok(st, h, body, 503, None, "request after the storm")
        time.sleep(float(h.get("retry-after", "1")))
    r = read_answer(st, body, False, False, MAX_TOKENS, False, "request after the storm")
    check(r is None or r == expected[(False, PROMPTS[3], False)], f"request after the storm: {r}")
    t_answer = time.monotonic() - t1
    print(f"hostile: {opened} connections opened at once in {t_open:.2f} s and dropped; idle again "
          f"{idle if idle is None else round(idle, 2)} s after the drop, a request answered {t_answer:.2f} s after it", flush=True)
    check(srv.alive(), "server alive after the connection storm")


def test_api_key(model):
    srv = Server(model, "-np", "2", "-c", "1024", "--api-key", "sekrit-key")
    port = srv.port
    body = {"messages": MSGS, "max_tokens": 4}
    for what, hdrs in [("no key", {}), ("wrong key", {"Authorization": "Bearer wrong"}),
                       ("key without Bearer", {"Authorization": "sekrit-key"}), ("Basic", {"Authorization": "Basic sekrit-key"}),
                       ("key prefix", {"Authorization": "Bearer sekrit"}), ("key + suffix", {"Authorization": "Bearer sekrit-key2"}),
                       ("empty Bearer", {"Authorization": "Bearer "})]:
        for method, path, b in [("POST", CHAT, body), ("POST", COMP, {"prompt": "a"}), ("GET", "/v1/models", None),
                                ("GET", "/metrics", None), ("GET", "/v1/nope", None)]:
            st, h, rb = call(port, method, path, b, hdrs)
            if error_ok(st, h, rb, 401, None, f"--api-key, {what}: {method} {path}"):
                check(json.loads(rb)["error"]["code"] == "invalid_api_key", f"--api-key {what}: code")
    st, _, rb = call(port, "GET", "/health")
    check(st == 200, f"--api-key: /health without a key answered {st}")
    # A second server on the same port fails with one line (it must not share the port).
    r = subprocess.run([BIN, "serve", "-m", model, "--port", str(port)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == 1 and "cannot bind" in err and "serving" not in err,
          f"a second server on port {port}: status {r.returncode}, {err!r}")
    good = {"Authorization": "Bearer sekrit-key"}
    st, _, rb = call(port, "POST", CHAT, body, good)
    read_answer(st, rb, True, False, 4, False, "--api-key, right key")
    st, _, rb = call(port, "GET", "/v1/models", None, good)
    check(st == 200 and json.loads(rb)["data"][0]["object"] == "model", f"--api-key: /v1/models with the key: {st} {rb[:200]!r}")
    srv.stop()


def open_stream(port, body):
    """Sends a request on a raw socket and reads the response head; returns (socket, status, headers, rest)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (len(data), data))
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return s, None, {}, buf
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return s, int(lines[0].split()[1]), hdrs, rest


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_queue_and_disconnect(model):
    srv = Server(model, "-np", "1", "--queue", "1", "-c", "8192")
    port = srv.port
    long_req = {"prompt": "Once upon a time", "max_tokens": 8000, "temperature": 0, "stream": True}
    # Queue full: one request in the slot, one waiting, the others 503 with Retry-After.
    results = [None] * 6

    def sender(i):
        results[i] = open_stream(port, long_req)

    ts = [threading.Thread(target=sender, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    statuses = [r[1] for r in results]
    print(f"queue: -np 1 --queue 1, 6 concurrent long requests answered {statuses}", flush=True)
    check(statuses.count(503) >= 1, f"queue: no 503 among {statuses}")
    check(statuses.count(200) <= 2 and statuses.count(200) + statuses.count(503) == 6, f"queue: statuses {statuses}")
    for s, st, h, rest in results:
        if st == 503:
            check("retry-after" in h, f"queue: 503 without Retry-After: {h}")
            n = int(h.get("content-length", "0"))
            while len(rest) < n:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
            error_ok(503, h, rest, 503, None, "queue: 503")
        rst_close(s)
    idle = srv.wait_idle(10)
    check(idle is not None, "queue: the dropped requests were cancelled (requests_in_flight and queue back to 0)")
    # Disconnect: streamed, after the first event; then non-streamed, after the response head.
    for stream in (True, False):
        gen0 = srv.metrics()["moetier_generated_tokens_total"]
        s, st, h, rest = open_stream(port, dict(long_req, stream=stream))
        check(st == 200, f"disconnect: status {st}")
        if stream:
            while b"data: " not in rest:
                d = s.recv(65536)
                if not d:
                    break
                rest += d
        rst_close(s)
        idle = srv.wait_idle(6)
        gen1 = srv.metrics()["moetier_generated_tokens_total"]
        what = "streamed" if stream else "non-streamed"
        print(f"disconnect ({what}): idle {idle if idle is None else round(idle, 2)} s after the close, "
              f"{gen1 - gen0:.0f} of max_tokens 8000 generated", flush=True)
        check(idle is not None, f"disconnect ({what}): requests_in_flight back to 0 within 6 s")
        # A stream notices at its next write; a non-streamed answer at its next keep-alive space (1 s).
        check(gen1 - gen0 < (2000 if stream else 7000), f"disconnect ({what}): {gen1 - gen0} tokens generated: not cancelled")
    st, _, body = call(port, "POST", COMP, {"prompt": "hi", "max_tokens": 8})
    read_answer(st, body, False, False, 8, False, "queue server after the disconnects")
    srv.stop()


def concurrent_streams(port, n, body):
    results = [None] * n

    def sender(i):
        results[i] = open_stream(port, body)

    ts = [threading.Thread(target=sender, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results


def test_queue_capacity(model):
    """The queue's places are on top of the free slots, and requests holding a slot or a queue place do
    not starve /metrics or the 503 answers of the HTTP threads."""
    long_req = {"prompt": "Once upon a time", "max_tokens": 8000, "temperature": 0, "stream": True}
    srv = Server(model, "-np", "2", "--queue", "0", "-c", "16384")
    results = concurrent_streams(srv.port, 3, long_req)
    statuses = sorted(r[1] for r in results)
    check(statuses == [200, 200, 503], f"-np 2 --queue 0, 3 concurrent requests: {statuses}, expected 2 x 200 and a 503")
    for r in results:
        rst_close(r[0])
    check(srv.wait_idle(10) is not None, "--queue 0: idle after the drops")
    srv.stop()
    srv = Server(model, "-np", "2", "--queue", "8", "-c", "16384")
    results = concurrent_streams(srv.port, 14, long_req)
    statuses = [r[1] for r in results]
    t0 = time.monotonic()
    m = srv.metrics()
    dt = time.monotonic() - t0
    print(f"queue: -np 2 --queue 8, 14 concurrent long requests answered {sorted(statuses)}; /metrics meanwhile "
          f"in {dt:.2f} s: in flight {m.get('moetier_requests_in_flight')}, queued {m.get('moetier_queue_length')}", flush=True)
    check(statuses.count(200) <= 10 and statuses.count(503) >= 4 and statuses.count(200) + statuses.count(503) == 14,
          f"-np 2 --queue 8, 14 concurrent requests: {statuses}")
    check(dt < 3, f"/metrics took {dt:.2f} s while slots and queue were full")
    for r in results:
        rst_close(r[0])
    check(srv.wait_idle(10) is not None, "--queue 8: idle after the drops")
    srv.stop()


def test_chunked_prefill(model):
    """Prompts longer than -b are prefilled a chunk per engine step between other sequences' decode
    steps; a request still gets the text it gets alone (6 requests on 4 slots: 2 wait in the queue)."""
    srv = Server(model, "-np", "4", "-c", "4096", "-b", "16")
    prompts = [f"The quick brown fox {i} jumps over the lazy dog. " * 12 for i in range(6)]

    def req(p):
        st, _, body = call(srv.port, "POST", COMP, {"prompt": p, "max_tokens": 24, "temperature": 0})
        return read_answer(st, body, False, False, 24, False, f"chunked prefill {p[:24]!r}")

    alone = [req(p) for p in prompts]
    res = [None] * len(prompts)
    ts = [threading.Thread(target=lambda i=i: res.__setitem__(i, req(prompts[i]))) for i in range(len(prompts))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(len(prompts)):
        check(alone[i] is not None and res[i] == alone[i], f"chunked prefill, request {i}: {res[i]} together, {alone[i]} alone")
    m = srv.metrics()
    check(m["moetier_prompt_tokens_total"] >= 2 * 6 * 16, f"chunked prefill: prompts of {m['moetier_prompt_tokens_total']} tokens")
    srv.stop()


def main():
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="moetier-load-") as tmp:
        model = os.path.join(tmp, "tiny.gguf")
        r = subprocess.run([BIN, "synth", "--preset", "tiny-qwen3moe", "--type", "Q8_0", "-o", model],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise SystemExit(f"moetier synth failed: {r.stdout.decode()}")
        srv = Server(model, "-np", "4", "-c", "2048")
        try:
            expected = test_load(srv)
            test_hostile(srv, expected)
            srv.stop()
        finally:
            if srv.alive():
                srv.proc.kill()
        test_api_key(model)
        test_queue_and_disconnect(model)
        test_queue_capacity(model)
        test_chunked_prefill(model)
    print(f"load_test: {len(FAILURES)} failures, {time.monotonic() - t_start:.1f} s", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
