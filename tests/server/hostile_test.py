#!/usr/bin/env python3
"""`moetier serve` under hostile clients (issue 13), Python 3 standard library only (helpers:
serve_client.py).

Starts the built binary (MOETIER_BIN) on a tiny synth model made in a temporary folder, and:
  hostile    malformed JSON, bodies over the 8 MiB limit, wrong types and out-of-range values for every
             field, invalid UTF-8, unknown roles and endpoints, wrong methods, broken HTTP, 1,000
             connections opened at once and dropped (some half-sent): each gets OpenAI's error shape
             with the right status (or the connection is closed), and the server keeps serving, with the
             answers it gave before.
  api key    a second server with --api-key: a missing or wrong key gets 401; a third one on the same
             port fails with "cannot bind".
Exit status 0 when every check passed; otherwise every failed check is printed and the status is 1.
"""
import json
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

from serve_client import (BIN, CHAT, COMP, MSGS, Server, call, check, error_ok, finish, raw_exchange, read_answer,
                          tiny_model)

PROMPT = "The capital of France is"
MAX_TOKENS = 16


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
        "seed": ["1", -2, 0.5, True, 2 ** 64],
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


def test_hostile(srv, before):
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
    connection_storm(srv, before)


def connection_storm(srv, before, n=1000):
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
        st, h, body = call(port, "POST", COMP, {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0})
        if st != 503:
            break
        error_ok(st, h, body, 503, None, "request after the storm")
        time.sleep(float(h.get("retry-after", "1")))
    r = read_answer(st, body, False, False, MAX_TOKENS, False, "request after the storm")
    check(r is None or r == before, f"request after the storm: {r}, before the hostile requests: {before}")
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


def main():
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="moetier-hostile-") as tmp:
        model = tiny_model(tmp)
        srv = Server(model, "-np", "4", "-c", "2048")
        try:
            st, _, body = call(srv.port, "POST", COMP, {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0})
            before = read_answer(st, body, False, False, MAX_TOKENS, False, "request before the hostile ones")
            test_hostile(srv, before)
            check("error" not in srv.stderr().lower(), f"server stderr: {srv.stderr()}")
            srv.stop()
        finally:
            if srv.alive():
                srv.proc.kill()
        test_api_key(model)
    return finish("hostile_test", t_start)


if __name__ == "__main__":
    sys.exit(main())
