#!/usr/bin/env python3
"""Helpers of the `moetier serve` tests (load_test.py, hostile_test.py), Python 3 standard library only:
a server process on a free port (MOETIER_BIN, default build/moetier; the port is read from its
"serving ... on http://HOST:PORT" line), requests on fresh connections or raw sockets, and the checks of
OpenAI's shapes (complete and streamed responses, SSE framing, usage, errors). `check` records a failed
condition and goes on; a test's exit status is `finish()`'s.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

BIN = os.environ.get("MOETIER_BIN", "build/moetier")
FAILURES = []
CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
MSGS = [{"role": "user", "content": "hi"}]


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


# ---------------------------------------------------------------------------------------------- sockets

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


def tiny_model(tmp):
    """A tiny qwen3moe synth model (Q8_0) written into folder `tmp`."""
    model = os.path.join(tmp, "tiny.gguf")
    r = subprocess.run([BIN, "synth", "--preset", "tiny-qwen3moe", "--type", "Q8_0", "-o", model],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit(f"moetier synth failed: {r.stdout.decode()}")
    return model


def finish(name, t_start):
    print(f"{name}: {len(FAILURES)} failures, {time.monotonic() - t_start:.1f} s", flush=True)
    return 1 if FAILURES else 0
