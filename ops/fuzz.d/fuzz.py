#!/usr/bin/env python3
"""ops/fuzz's driver (issue 10): starts redis-server, fal-sim, a JWKS server and Clapper on free
loopback ports, runs schemathesis over openapi.yaml (anonymous, as a user, as the admin), then a
battery of hostile requests (webhook headers and bodies, odd headers and numbers elsewhere), and
fails on any 5xx, any crash (the gateway process exited), a broken expectation (something that must
be refused was accepted), or /healthz not 200 at the end. A crashed gateway is restarted so one
run finds every crasher. Everything it starts is stopped on exit (by pid)."""
import argparse, base64, hashlib, hmac, http.server, json, os, re, secrets, shutil, signal, socket
import subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request, uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ap = argparse.ArgumentParser(prog="ops/fuzz")
ap.add_argument("--bin", required=True, help="directory holding clapper and fal-sim")
ap.add_argument("--quick", action="store_true", help="the short run ops/test makes")
ap.add_argument("--examples", type=int, default=None, help="schemathesis examples per operation")
ap.add_argument("--seed", type=int, default=None, help="schemathesis seed (default: random, printed)")
ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, reports)")
args = ap.parse_args()
EXAMPLES = args.examples or (8 if args.quick else 100)
SEED = args.seed if args.seed is not None else secrets.randbelow(2**31)
DEADLINE = time.monotonic() + (150 if args.quick else 3600)

WEBHOOK_SECRET = "fuzz-webhook-secret-" + secrets.token_hex(16)
JWT_SECRET = "fuzz-jwt-secret-" + secrets.token_hex(16)
ADMIN_TOKEN = "fuzz-admin-token-" + secrets.token_hex(16)
FAL_USER = "fuzz-fal-user"
USER = "fuzz-user"
TMP = tempfile.mkdtemp(prefix="clapper-fuzz.")
procs = []
failures = []  # (what, detail)
notes = []     # worth reading, not failures
crashes = []
counts = {"battery": 0}


T0 = time.monotonic()


def log(msg):
    print(f"==> [{time.monotonic() - T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


def fail(what, detail):
    failures.append((what, detail))
    print(f"FAIL {what}: {detail}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def wait_port(port, limit=30, proc=None):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited ({proc.returncode}) before listening on {port}; logs in {TMP}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close(); return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {limit}s")


def start(name, argv, env=None):
    out = open(os.path.join(TMP, f"{name}.log"), "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    procs.append(p)
    return p


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try: os.killpg(p.pid, signal.SIGTERM)
            except OSError: pass
    for p in reversed(procs):
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try: os.killpg(p.pid, signal.SIGKILL)
            except OSError: pass


# MARK: - tokens: users' HS256 JWTs, webhook URL tokens, fal's Ed25519 webhook signatures

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_raw(header, payload, secret=JWT_SECRET):
    """header and payload are JSON text (or bytes), signed as given: hostile claims stay hostile."""
    h = header if isinstance(header, bytes) else header.encode()
    p = payload if isinstance(payload, bytes) else payload.encode()
    signing_input = b64url(h) + "." + b64url(p)
    mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


def user_token(sub=USER, lifetime=7200):
    """Like JWTSigner.token: sorted keys, whole seconds, HS256."""
    return jwt_raw('{"alg":"HS256","typ":"JWT"}', json.dumps({"exp": int(time.time()) + lifetime, "sub": sub}, separators=(",", ":")))


def webhook_token(job_id, task):
    """Like WebhookToken.make: lowercase hex HMAC-SHA256 of "jobId:task" with the webhook secret."""
    return hmac.new(WEBHOOK_SECRET.encode(), f"{job_id}:{task}".encode(), hashlib.sha256).hexdigest()


from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

SIGNING_KEY = Ed25519PrivateKey.generate()


def sign_webhook(request_id, user_id, timestamp, body):
    """fal's scheme (FalWebhookVerifier.message): request_id \\n user_id \\n timestamp \\n sha256hex(body)."""
    message = request_id + b"\n" + user_id + b"\n" + timestamp + b"\n" + hashlib.sha256(body).hexdigest().encode()
    return SIGNING_KEY.sign(message).hex()


def serve_jwks(port, sim_jwks_url):
    """Our key beside fal-sim's: fal-sim's own webhooks and ours both verify."""
    raw = SIGNING_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    keys = [{"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": "fuzz"}]
    try:
        keys += json.loads(urllib.request.urlopen(sim_jwks_url, timeout=10).read())["keys"]
    except Exception as error:  # fal-sim's own webhooks are then rejected; the reconciler still polls
        notes.append(f"could not read fal-sim's JWKS ({error})")
    document = json.dumps({"keys": keys}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document))); self.end_headers(); self.wfile.write(document)

        def log_message(self, *a): pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# MARK: - a raw HTTP/1.1 client: any bytes in any header, a deadline on everything

class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        try: return json.loads(self.body)
        except ValueError: return None


def raw_request(port, method, target, headers=(), body=b"", timeout=15, stream=False):
    """Sends one request (Connection: close); returns an Answer, or None when the connection closed
    or timed out without a status line. stream=True: returns after the headers and the first bytes."""
    head = [f"{method} {target} HTTP/1.1".encode("utf-8") if isinstance(target, str) else target]
    names = set()
    for name, value in headers:
        names.add(name.lower())
        n = name.encode() if isinstance(name, str) else name
        v = value.encode("utf-8") if isinstance(value, str) else value
        head.append(n + b": " + v)
    if "host" not in names: head.append(f"Host: 127.0.0.1:{port}".encode())
    if body or method in ("POST", "PUT"):
        if "content-length" not in names and "transfer-encoding" not in names:
            head.append(b"Content-Length: " + str(len(body)).encode())
    head.append(b"Connection: close")
    data = b"\r\n".join(head) + b"\r\n\r\n" + body
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    received = b""
    try:
        sock.settimeout(timeout)
        try:
            sock.sendall(data)
        except OSError:
            pass  # the server may answer (413) and close before reading everything
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk: break
            received += chunk
            if stream and b"\r\n\r\n" in received:
                header_end = received.index(b"\r\n\r\n")
                if len(received) > header_end + 4:
                    break  # the stream's first bytes (or a short answer's body): enough
                sock.settimeout(1.0)  # the headers alone: wait a moment for the first bytes
    finally:
        sock.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    if not m: return None
    header_blob, _, rest = received.partition(b"\r\n\r\n")
    headers = {}
    for line in header_blob.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    if headers.get("transfer-encoding", "").lower() == "chunked" and not stream:
        out, buf = b"", rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            try: size = int(size_line.split(b";")[0], 16)
            except ValueError: break
            if size == 0: break
            out += buf[:size]; buf = buf[size + 2:]
        rest = out
    return Answer(int(m.group(1)), headers, rest)


# MARK: - the gateway under test

class Gateway:
    def __init__(self, env, bin_dir):
        self.env, self.bin, self.proc, self.restarts = env, bin_dir, None, 0
        self.port = int(env["CLAPPER_HTTP_PORT"])
        self.log_path = os.path.join(TMP, "clapper.log")

    def start(self):
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.proc = start("clapper", [os.path.join(self.bin, "clapper")], env=self.env)
        wait_port(self.port, 60, self.proc)

    def log_since_start(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset); return f.read().decode("utf-8", "replace")

    def check(self, during):
        """A crash is the process gone: reported with its last log lines, then the gateway restarts."""
        if self.proc.poll() is None: return True
        code = self.proc.returncode
        lines = [l for l in self.log_since_start().splitlines() if l.strip()]
        crash_lines = [l for l in lines if re.search(r"Fatal error|Crash|panic|Illegal instruction|Trace/breakpoint", l)]
        crashes.append({"during": during, "exit": code, "log": crash_lines or lines[-8:]})
        fail(f"gateway crashed at {during}", f"exit status {code}; log: " + " | ".join((crash_lines or lines[-8:])[:4]))
        self.restarts += 1
        if self.restarts > 20: raise SystemExit("the gateway crashed more than 20 times; giving up")
        self.start()
        return False


# MARK: - schemathesis

def schemathesis_run(name, port, extra, checks):
    """One `st run`; its failures (5xx, and the enabled conformance checks) are ours."""
    report = os.path.join(TMP, f"st-{name}")
    remaining = int(DEADLINE - time.monotonic())
    if remaining < 20:
        notes.append(f"schemathesis {name}: skipped, time budget spent"); return
    st = os.path.join(os.path.dirname(sys.executable), "st")
    argv = [st if os.access(st, os.X_OK) else "st", "--no-color", "run", os.path.join(ROOT, "openapi.yaml"), "--url", f"http://127.0.0.1:{port}",
            "--checks", ",".join(checks), "--max-examples", str(EXAMPLES), "--seed", str(SEED),
            "--request-timeout", "10", "--workers", "2", "--continue-on-failure", *(["--no-shrink"] if args.quick else []),
            "--suppress-health-check", "all", "--phases", "examples,coverage,fuzzing" if args.quick else "examples,coverage,fuzzing,stateful",
            "--report", "ndjson", "--report-dir", report, "--warnings", "off", *extra]
    t0 = time.monotonic()
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=remaining, cwd=TMP)
    except subprocess.TimeoutExpired as expired:
        fail(f"schemathesis {name}", f"did not finish within the time budget ({remaining} s)")
        open(os.path.join(TMP, f"st-{name}.txt"), "w").write(str(expired.stdout or "")); return
    elapsed = time.monotonic() - t0
    text = out.stdout + out.stderr
    open(os.path.join(TMP, f"st-{name}.txt"), "w").write(text)
    tested = re.search(r"Tested: (\d+)", text)
    summary = ([f"{tested.group(1)} operations"] if tested else []) + \
              [l.strip() for l in text.splitlines() if re.search(r"^\s*\d+ generated|Scenarios:", l)]
    cases = re.search(r"(\d+) generated, (\d+) found (\d+) unique failures", text)
    stats.setdefault("schemathesis", []).append({"run": name, "seconds": round(elapsed, 1), "exit": out.returncode,
                                                "summary": summary, "cases": cases.group(0) if cases else None})
    log(f"schemathesis {name}: exit {out.returncode} in {elapsed:.0f} s; " + "; ".join(summary[-3:]))
    if out.returncode != 0:
        # Schemathesis's own internal errors (a "Runtime Error" inside hypothesis) are not the
        # gateway's: noted. Failed checks, network errors and timeouts are failures.
        summary_part = text[text.rfind("SUMMARY"):]
        errors = re.findall(r"(?m)^\s*\S*\s*([A-Z][A-Za-z ]+ Error|Timeout[A-Za-z ]*): \d+", summary_part.split("Test cases:")[0])
        only_internal = "Failures:" not in summary_part and errors and all(e == "Runtime Error" for e in errors)
        where = os.path.join(TMP, f"st-{name}.txt")
        if only_internal:
            notes.append(f"schemathesis {name}: an internal schemathesis error ({', '.join(errors)}), see {where}")
        else:
            section = text[text.find("FAILURES"):] if "FAILURES" in text else text[-6000:]
            fail(f"schemathesis {name}", f"exit {out.returncode}; full output {where}\n{section[:12000]}")


stats = {}
GW = None


# MARK: - the battery

def expect(label, answer, want):
    """want: "4xx", "2xx", "not5xx" (anything below 500), or a set of statuses."""
    counts["battery"] += 1
    if answer is None:
        # a crash shows as a closed connection: wait a moment for the process to exit
        end = time.monotonic() + 3
        while GW.proc.poll() is None and time.monotonic() < end: time.sleep(0.05)
        if GW.check(label):
            notes.append(f"{label}: no HTTP answer (connection closed or timed out)")
        return
    status = answer.status
    body = answer.body[:300].decode("utf-8", "replace")
    if status >= 500:
        errors = [l for l in GW.log_since_start().splitlines() if re.search(r"\b(error|critical)\b", l)][-2:]
        fail(f"5xx {label}", f"{status} {body}; log: {' | '.join(errors)[:600]}")
    elif want == "4xx" and not 400 <= status < 500:
        fail(f"accepted {label}", f"expected 4xx, got {status} {body}")
    elif want == "2xx" and not 200 <= status < 300:
        fail(f"refused {label}", f"expected 2xx, got {status} {body}")
    elif isinstance(want, (set, frozenset, tuple)) and status not in want:
        fail(f"unexpected {label}", f"expected {sorted(want)}, got {status} {body}")
    elif status >= 400 and not (answer.json() or {}).get("error", {}).get("code") and status not in (413, 431):
        notes.append(f"{label}: {status} without the JSON error body: {body[:120]!r}")


def create_job(gw, audio=False, prompt=None):
    body = json.dumps({"prompt": prompt or f"fuzz {uuid.uuid4()}", "durationSeconds": 2,
                       "feature": {"audio": audio, "audioTier": "fast"}}).encode()
    a = raw_request(gw.port, "POST", "/v1/jobs", [("Authorization", "Bearer " + user_token()), ("Content-Type", "application/json")], body)
    if a is None or a.status != 202:
        fail("create a job for the battery", f"{a and a.status} {a and a.body[:300]!r}"); return None
    return a.json()


def job_request_id(gw, job_id, task="video", wait=5.0):
    end = time.monotonic() + wait
    while time.monotonic() < end:
        a = raw_request(gw.port, "GET", f"/v1/jobs/{job_id}", [("Authorization", "Bearer " + user_token())])
        rid = a and (a.json() or {}).get(f"{task}RequestId")
        if rid: return rid
        time.sleep(0.1)
    return None


def webhook(gw, job_id, task, body, *, token=None, request_id=None, user_id=FAL_USER.encode(), timestamp=None,
            signature=None, drop=(), extra=(), target=None):
    """A webhook signed with our key over exactly these bytes, unless signature/drop say otherwise."""
    request_id = request_id if request_id is not None else b"fuzz-" + uuid.uuid4().hex.encode()
    timestamp = timestamp if timestamp is not None else str(int(time.time())).encode()
    if signature is None:
        signature = sign_webhook(request_id, user_id, timestamp, body).encode()
    headers = [("Content-Type", "application/json"), ("X-Fal-Webhook-Request-Id", request_id),
               ("X-Fal-Webhook-User-Id", user_id), ("X-Fal-Webhook-Timestamp", timestamp),
               ("X-Fal-Webhook-Signature", signature)]
    headers = [(n, v) for n, v in headers if n not in drop] + list(extra)
    if target is None:
        target = f"/v1/webhooks/fal/{job_id}/{task}?token={token if token is not None else webhook_token(job_id, task)}"
    return raw_request(gw.port, "POST", target, headers, body)


def ok_body(request_id, url="http://127.0.0.1:1/v.mp4"):
    return json.dumps({"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
                       "payload": {"video": {"url": url, "content_type": "video/mp4"}}}).encode()


HOSTILE_NUMBERS = ["1e300", "-1e300", "1e309", "-1e309", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "-Infinity",
                   "12345678901234567890", "-12345678901234567890", "99999999999999999999999999999999999999",
                   "", " ", "１７００００００００", "١٧٠٠٠٠٠٠٠٠", "0x10", "1_700_000_000", "+1", "-0", "0", "-1", "1e-300",
                   "4.9e-324", "9223372036854775807", "9223372036854775808", "-9223372036854775809",
                   "1" * 400, "1." + "0" * 5000, "1e300000", "0." + "0" * 400 + "1", "1,5", "--1", "1e", "e1", "\t"]


def battery_webhook_headers(gw, jobs):
    log("battery: webhook headers")
    job = jobs[0]["jobId"]
    now = str(int(time.time()))
    body = ok_body("fuzz-nonexistent")
    for ts in HOSTILE_NUMBERS + [now + ".5", now + "e0", " " + now, now + " ", str(int(now) + 10**6), str(int(now) - 10**6)]:
        tsb = ts.encode("utf-8")
        # signed over the hostile timestamp (only the timestamp is wrong) and with a bad signature
        expect(f"webhook timestamp {ts[:40]!r} (signed)", webhook(gw, job, "video", body, timestamp=tsb),
               "not5xx" if ts.strip() in (now, now + ".5", now + "e0") else "4xx")
        expect(f"webhook timestamp {ts[:40]!r} (bad signature)", webhook(gw, job, "video", body, timestamp=tsb, signature=b"00" * 64), "4xx")
        gw.check(f"webhook timestamp {ts[:40]!r}")
    for name in ["X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id", "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature"]:
        expect(f"webhook without {name}", webhook(gw, job, "video", body, drop=(name,)), "4xx")
        expect(f"webhook with empty {name}", webhook(gw, job, "video", body, drop=(name,), extra=((name, b""),)), "4xx")
    good = sign_webhook(b"r", FAL_USER.encode(), now.encode(), body)
    for label, sig in [("non-hex", b"zz" * 64), ("odd length", good[:-1].encode()), ("62 bytes", good[:-4].encode()),
                       ("66 bytes", (good + "abcd").encode()), ("1 MB of hex", b"ab" * 500_000), ("fullwidth", "０" * 128),
                       ("spaces", b"  ".join([good[i:i + 2].encode() for i in range(0, 128, 2)])), ("0x prefix", b"0x" + good.encode()),
                       ("base64", base64.b64encode(bytes.fromhex(good))), ("NUL", b"\x00" * 128), ("latin-1", b"\xe9" * 128)]:
        expect(f"webhook signature {label}", webhook(gw, job, "video", body, signature=sig), "4xx")
    for label, value in [("request id 100 KB", b"r" * 100_000), ("request id UTF-8", "réquest-ｉｄ".encode()),
                         ("request id latin-1", b"\xff\xfe"), ("user id foreign", b"someone-else"), ("user id 100 KB", b"u" * 100_000)]:
        field = "request_id" if "request" in label else "user_id"
        kwargs = {field: value}
        expect(f"webhook {label}", webhook(gw, job, "video", body, **kwargs), "4xx" if "user" in label else "not5xx")
    # a header block larger than the server takes: refused or dropped, never a crash
    expect("webhook 200 KB header block", webhook(gw, job, "video", body, extra=[(f"X-Fuzz-{i}", b"x" * 2000) for i in range(100)]), "not5xx")
    gw.check("webhook headers")


def battery_webhook_tokens(gw, jobs):
    log("battery: webhook URL tokens and paths")
    job = jobs[0]["jobId"]
    other = jobs[1]["jobId"]
    body = ok_body("fuzz-token")
    t = webhook_token(job, "video")
    for label, target in [
        ("no token", f"/v1/webhooks/fal/{job}/video"),
        ("empty token", f"/v1/webhooks/fal/{job}/video?token="),
        ("token of another job", f"/v1/webhooks/fal/{job}/video?token={webhook_token(other, 'video')}"),
        ("token of the other task", f"/v1/webhooks/fal/{job}/video?token={webhook_token(job, 'audio')}"),
        ("short token", f"/v1/webhooks/fal/{job}/video?token={t[:-2]}"),
        ("long token", f"/v1/webhooks/fal/{job}/video?token={t}00"),
        ("non-hex token", f"/v1/webhooks/fal/{job}/video?token={'zz' * 32}"),
        ("percent-encoded NUL token", f"/v1/webhooks/fal/{job}/video?token=%00{t[3:]}"),
        ("broken percent-encoding", f"/v1/webhooks/fal/{job}/video?token=%zz%{t[4:]}"),
        ("100 KB token", f"/v1/webhooks/fal/{job}/video?token={'a' * 100_000}"),
        ("fullwidth token", "/v1/webhooks/fal/" + job + "/video?token=" + "%EF%BC%90" * 64),
        ("unknown task", f"/v1/webhooks/fal/{job}/subtitles?token={t}"),
        ("task VIDEO", f"/v1/webhooks/fal/{job}/VIDEO?token={t}"),
        ("unknown job with its token", f"/v1/webhooks/fal/nope/video?token={webhook_token('nope', 'video')}"),
        ("10 KB job id with its token", f"/v1/webhooks/fal/{'j' * 10_000}/video?token={webhook_token('j' * 10_000, 'video')}"),
        ("job id ..", f"/v1/webhooks/fal/../video?token={webhook_token('..', 'video')}"),
        ("job id percent-encoded UTF-8", f"/v1/webhooks/fal/%C3%A9%CC%81/video?token={webhook_token('é́', 'video')}"),
        ("job id percent-encoded invalid UTF-8", f"/v1/webhooks/fal/%FF%FE/video?token=" + "0" * 64),
    ]:
        expect(f"webhook {label}", webhook(gw, job, "video", body, target=target), "4xx")
    expect("webhook token in upper case", webhook(gw, job, "video", body, token=t.upper(), request_id=b"fuzz-upper"), "not5xx")
    expect("webhook token given twice", webhook(gw, job, "video", body, target=f"/v1/webhooks/fal/{job}/video?token=x&token={t}"), "not5xx")
    gw.check("webhook tokens")


def Q(text):
    return urllib.parse.quote(text, safe="")


def deep(n, open_, close_):
    return open_ * n + close_ * n


def battery_webhook_bodies(gw, jobs):
    log("battery: webhook bodies (signed, on live jobs)")
    big_int = "1" + "0" * 400
    bodies = [
        ("empty", b""), ("whitespace", b" \n\t "), ("not JSON", b"not json"), ("null", b"null"), ("array", b"[]"),
        ("string", b'"OK"'), ("number 1e999", b"1e999"), ("truncated", b'{"request_id": "x", "status": "O'),
        ("trailing garbage", b'{"status":"OK"} xyz'), ("invalid UTF-8", b'{"status":"OK","payload":{"video":{"url":"\xff\xfe"}}}'),
        ("UTF-16", '{"status":"OK"}'.encode("utf-16")), ("BOM", b'\xef\xbb\xbf{"status":"OK","payload":{}}'),
        ("NUL", b'{"status":"OK\x00"}'), ("lone surrogate escape", b'{"status":"OK","request_id":"\\ud800","payload":{"video":{"url":"\\udfff"}}}'),
        ("deep arrays 100k", deep(100_000, b"[", b"]")), ("deep objects in payload 20k", b'{"status":"OK","payload":' + deep(20_000, b'{"a":', b"}").replace(b"}", b"1}", 1) + b"}"),
        ("deep arrays in payload 5k", b'{"status":"OK","payload":{"video":' + deep(5_000, b"[", b"]") + b"}}"),
        ("status number", b'{"status":200}'), ("status null", b'{"status":null}'), ("status object", b'{"status":{"OK":true}}'),
        ("status unknown", b'{"status":"DONE","payload":{}}'), ("status lowercase", b'{"status":"ok","payload":{}}'),
        ("payload string", b'{"status":"OK","payload":"video"}'), ("payload array", b'{"status":"OK","payload":[1,2]}'),
        ("payload null", b'{"status":"OK","payload":null}'), ("no payload", b'{"status":"OK"}'),
        ("video url number", b'{"status":"OK","payload":{"video":{"url":1e300}}}'),
        ("video url 100 KB", json.dumps({"status": "OK", "payload": {"video": {"url": "http://x/" + "a" * 100_000}}}).encode()),
        ("video url javascript:", b'{"status":"OK","payload":{"video":{"url":"javascript:alert(1)"}}}'),
        ("video null", b'{"status":"OK","payload":{"video":null}}'),
        ("huge numbers", ('{"status":"OK","payload":{"video":{"url":"http://x/v.mp4","file_size":%s,"seed":-%s,"timings":{"inference":1e300,"x":-1e-400,"y":%s.5e99999}}}}' % (big_int, big_int, big_int)).encode()),
        ("20-digit ints", b'{"status":"OK","payload":{"video":{"url":"http://x/v.mp4","file_size":12345678901234567890,"width":-12345678901234567890}}}'),
        ("error status with odd error", b'{"status":"ERROR","error":{"msg":1},"payload":{"detail":[{"loc":["body",1e300],"msg":null}]}}'),
        ("error status with huge error", json.dumps({"status": "ERROR", "error": "e" * 200_000, "payload": None}).encode()),
        ("error status, payload_error number", b'{"status":"ERROR","payload_error":1e300}'),
        ("request_id number", b'{"request_id":1e300,"status":"OK","payload":{}}'),
        ("request_id mismatch", b'{"request_id":"someone-else","status":"OK","payload":{"video":{"url":"http://x/v.mp4"}}}'),
        ("duplicate keys", b'{"status":"ERROR","status":"OK","payload":{"video":{"url":"a"},"video":{"url":"b"}}}'),
        ("1000 keys", json.dumps({"status": "OK", "payload": {f"k{i}": i for i in range(1000)}}).encode()),
        ("just under 1 MB", json.dumps({"status": "OK", "payload": {"video": {"url": "http://x/v.mp4"}, "pad": "p" * 1_040_000}}).encode()),
        ("1 MB + 1", b'{"status":"OK","pad":"' + b"p" * (1_048_576 - 21) + b'"}'),
        ("5 MB", b'{"status":"OK","pad":"' + b"p" * 5_000_000 + b'"}'),
        ("combining marks", json.dumps({"status": "OK", "payload": {"video": {"url": "http://x/" + "a" + "\u0301" * 100_000}}}).encode()),
    ]
    live = [j for j in jobs if j.get("_rid")]
    if not live:
        notes.append("no job had a fal request id: bodies were sent to jobs without one")
        live = jobs
    for i, (label, body) in enumerate(bodies):
        j = live[i % len(live)]
        rid = (j.get("_rid") or "fuzz-none").encode()
        want = {413} if label in ("1 MB + 1", "5 MB") else "not5xx"
        if label in ("empty", "whitespace", "not JSON", "truncated", "invalid UTF-8", "UTF-16", "deep arrays 100k", "null", "array", "string", "number 1e999"):
            want = "4xx"
        expect(f"webhook body {label}", webhook(gw, j["jobId"], "video", body, request_id=rid), want)
        gw.check(f"webhook body {label}")
    # what the bodies above stored must still read back: the job, the listing, the admin view
    for j in live[:len(bodies)]:
        expect(f"GET job {j['jobId']} after hostile webhooks", raw_request(gw.port, "GET", f"/v1/jobs/{j['jobId']}", [("Authorization", "Bearer " + user_token())]), "2xx")
    expect("GET /v1/jobs after hostile webhooks", raw_request(gw.port, "GET", "/v1/jobs?limit=100", [("Authorization", "Bearer " + user_token())]), "2xx")
    expect("admin jobs after hostile webhooks", raw_request(gw.port, "GET", "/v1/admin/jobs?status=completed&limit=500", [("Authorization", "Bearer " + ADMIN_TOKEN)]), "2xx")
    gw.check("webhook bodies")


def battery_other_routes(gw, jobs):
    log("battery: other routes")
    user = [("Authorization", "Bearer " + user_token())]
    admin = [("Authorization", "Bearer " + ADMIN_TOKEN)]
    create = lambda body, extra=(): raw_request(gw.port, "POST", "/v1/jobs", user + [("Content-Type", "application/json")] + list(extra), body)
    plain = json.dumps({"prompt": "a lighthouse", "durationSeconds": 2}).encode()
    # prompts: JSON Schema maxLength counts code points (2,000)
    expect("prompt: 1 letter + 300,000 combining marks", create(json.dumps({"prompt": "a" + "\u0301" * 300_000}).encode()), "4xx")
    expect("prompt: 2,001 combining marks", create(json.dumps({"prompt": "a" + "\u0301" * 2_000}).encode()), "4xx")
    expect("prompt: 2,000 code points", create(json.dumps({"prompt": "a" + "\u0301" * 1_999}).encode()), "not5xx")
    expect("prompt: 2,001 emoji", create(json.dumps({"prompt": "\U0001F600" * 2_001}).encode()), "4xx")
    expect("prompt: zalgo ZWJ soup", create(json.dumps({"prompt": "\u200d\u0301\ufe0f" * 600}).encode()), "not5xx")
    expect("prompt: lone surrogate", create(b'{"prompt":"\\ud800"}'), "not5xx")
    expect("prompt: NUL", create(b'{"prompt":"a\\u0000b"}'), "not5xx")
    expect("negativePrompt: 300,000 combining marks", create(json.dumps({"prompt": "a", "video": {"negativePrompt": "a" + "\u0301" * 300_000}}).encode()), "4xx")
    for value in ["1e300", "-1", "12345678901234567890", "2.5", "1e0", "-0", "null", '"5"', "true", "[5]"]:
        expect(f"durationSeconds {value}", create(b'{"prompt":"x","durationSeconds":' + value.encode() + b"}"), "not5xx")
        expect(f"video.seed {value}", create(b'{"prompt":"x","video":{"seed":' + value.encode() + b"}}"), "not5xx")
    expect("metadata 10,000 nested objects", create(b'{"prompt":"x","metadata":' + deep(10_000, b'{"a":', b"}").replace(b"}", b"1}", 1) + b"}"), "4xx")
    expect("metadata huge numbers", create(b'{"prompt":"x","metadata":{"n":1e999,"m":' + b"9" * 300 + b"}}"), "not5xx")
    expect("body 1 MB + 1", create(b'{"prompt":"' + b"p" * (1_048_576 - 12) + b'"}'), {413})
    # Idempotency-Key
    for label, key in [("empty", b""), ("256 chars", b"k" * 256), ("255 chars", b"k" * 255), ("100 KB", b"k" * 100_000),
                       ("UTF-8", "clé-ｉｄ\u0301".encode()), ("latin-1 bytes", b"\xff\xfe"), ("control chars", b"a\x01b\x7f"),
                       ("spaces", b"   "), ("255 combining marks", ("a" + "\u0301" * 254).encode())]:
        expect(f"Idempotency-Key {label}", create(plain, [("Idempotency-Key", key)]), "not5xx")
    expect("Idempotency-Key given twice", create(plain, [("Idempotency-Key", b"a"), ("Idempotency-Key", b"b")]), "not5xx")
    # query numbers
    for value in ["1e300", "-1", "0", "12345678901234567890", "nan", "inf", "", "%00", "1.5", Q("１０"), "-1e300", "99999999999999999999999", Q("٣"), "1e-400"]:
        expect(f"GET /v1/jobs?limit={value}", raw_request(gw.port, "GET", f"/v1/jobs?limit={value}", user), "not5xx")
        expect(f"GET /v1/admin/jobs?olderThan={value}", raw_request(gw.port, "GET", f"/v1/admin/jobs?olderThan={value}", admin), "not5xx")
        expect(f"GET /v1/admin/jobs?limit={value}", raw_request(gw.port, "GET", f"/v1/admin/jobs?limit={value}", admin), "not5xx")
    for value in ["x", "%FF", Q("\u00e9\u0301"), "1-0", "!!!", "a" * 10_000, Q("\x00"), Q("{\"a\":1e300}")]:
        expect(f"GET /v1/jobs?cursor={value[:20]}", raw_request(gw.port, "GET", f"/v1/jobs?cursor={value}", user), "not5xx")
    for value in ["1e300", "-1", "12345678901234567890", "1.5", "null", '"10"', "1e-300"]:
        expect(f"admin reconcile olderThanSeconds {value}",
               raw_request(gw.port, "POST", "/v1/admin/reconcile", admin + [("Content-Type", "application/json")],
                           b'{"dryRun":true,"olderThanSeconds":' + value.encode() + b"}"), "not5xx")
    expect("admin reconcile 501 job ids", raw_request(gw.port, "POST", "/v1/admin/reconcile", admin + [("Content-Type", "application/json")],
                                                       json.dumps({"dryRun": True, "jobIds": [str(i) for i in range(501)]}).encode()), "4xx")
    expect("admin request id 10 KB", raw_request(gw.port, "GET", "/v1/admin/requests/" + "r" * 10_000, admin), "not5xx")
    # Authorization: hostile bearer tokens, some with a valid HS256 signature over hostile claims
    hdr = '{"alg":"HS256","typ":"JWT"}'
    tokens = [
        ("garbage", "a.b.c"), ("100 KB", "a" * 100_000), ("empty", ""), ("two dots only", ".."),
        ("alg none", b64url(b'{"alg":"none"}') + "." + b64url(b'{"sub":"x","exp":9999999999}') + "."),
        ("exp 1e300", jwt_raw(hdr, '{"sub":"x","exp":1e300}')), ("exp -1e300", jwt_raw(hdr, '{"sub":"x","exp":-1e300}')),
        ("exp 1e999", jwt_raw(hdr, '{"sub":"x","exp":1e999}')), ("exp 20 digits", jwt_raw(hdr, '{"sub":"x","exp":12345678901234567890}')),
        ("exp string", jwt_raw(hdr, '{"sub":"x","exp":"9999999999"}')), ("exp null", jwt_raw(hdr, '{"sub":"x","exp":null}')),
        ("nbf 1e300", jwt_raw(hdr, '{"sub":"x","exp":9999999999,"nbf":1e300}')), ("nbf -1e300", jwt_raw(hdr, '{"sub":"x","exp":9999999999,"nbf":-1e300}')),
        ("sub number", jwt_raw(hdr, '{"sub":1e300,"exp":9999999999}')), ("sub 100 KB", jwt_raw(hdr, json.dumps({"sub": "s" * 100_000, "exp": 9999999999}))),
        ("sub combining marks", jwt_raw(hdr, json.dumps({"sub": "a" + "\u0301" * 5000, "exp": 9999999999}))),
        ("sub with braces", jwt_raw(hdr, json.dumps({"sub": "}{x}:*", "exp": 9999999999}))),
        ("payload not JSON", jwt_raw(hdr, "not json")), ("payload deep", jwt_raw(hdr, deep(50_000, "[", "]"))),
        ("header deep", jwt_raw(deep(50_000, "[", "]"), '{"sub":"x","exp":9999999999}')),
        ("crit header", jwt_raw('{"alg":"HS256","crit":["exp"]}', '{"sub":"x","exp":9999999999}')),
    ]
    for label, token in tokens:
        for method, path in [("GET", "/v1/jobs"), ("GET", "/v1/events")]:
            a = raw_request(gw.port, method, path, [("Authorization", "Bearer " + token)], stream=path.endswith("events"), timeout=5)
            # far-future exp, far-past nbf and odd subjects are valid tokens: only no 5xx is asked
            want = "not5xx" if label in ("sub 100 KB", "sub combining marks", "sub with braces", "exp 1e300",
                                         "exp 20 digits", "nbf -1e300") else "4xx"
            expect(f"{method} {path} with token {label}", a, want)
    for value in [b"Bearer", b"Basic Zm9vOmJhcg==", b"Bearer  " + ADMIN_TOKEN.encode(), b"bearer " + ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode(), b"Bearer " + b"\xff" * 40]:
        expect(f"admin jobs with Authorization {value[:12]!r}", raw_request(gw.port, "GET", "/v1/admin/jobs", [("Authorization", value)]), "not5xx")
    expect("user token on an admin route", raw_request(gw.port, "GET", "/v1/admin/jobs", user), "4xx")
    expect("admin token on a user route", raw_request(gw.port, "GET", "/v1/jobs", admin), "4xx")
    # events: garbage Last-Event-ID (header and query), on a real job with its events token and as a user
    job = jobs[0]
    events_url = job.get("eventsUrl", "")
    events_token = re.search(r"token=([^&]+)", events_url)
    for value in ["garbage", "0-0", "-1", "1-", "-", "1e300-0", "99999999999999999999-99999999999999999999",
                  "18446744073709551615-18446744073709551615", "18446744073709551616-0", "1-1-1", "nan-nan", "１-１",
                  "a" * 100_000, "\u0301" * 1000, "$", "+", "1" * 30]:
        v = value.encode()
        expect(f"job events Last-Event-ID {value[:30]!r}",
               raw_request(gw.port, "GET", f"/v1/jobs/{job['jobId']}/events", user + [("Last-Event-ID", v)], stream=True, timeout=5), "not5xx")
        expect(f"user events Last-Event-ID {value[:30]!r}", raw_request(gw.port, "GET", "/v1/events", user + [("Last-Event-ID", v)], stream=True, timeout=5), "not5xx")
        if events_token:
            q = Q(value[:5000])
            expect(f"job events lastEventId={value[:30]!r} with its token",
                   raw_request(gw.port, "GET", f"/v1/jobs/{job['jobId']}/events?token={events_token.group(1)}&lastEventId={q}", [], stream=True, timeout=5), "not5xx")
    for label, tok in [("garbage", "x.y"), ("100 KB", "a" * 100_000), ("webhook token", webhook_token(job["jobId"], "video")), ("empty", "")]:
        expect(f"job events with events token {label}", raw_request(gw.port, "GET", f"/v1/jobs/{job['jobId']}/events?token={tok}", [], stream=True, timeout=5), "4xx")
        expect(f"user events with events token {label}", raw_request(gw.port, "GET", f"/v1/events?token={tok}", [], stream=True, timeout=5), "4xx")
    # odd ids and methods
    for jid in ["%00", "%FF%FE", "..", "a" * 10_000, "%C3%A9%CC%81", "{jobId}", "*"]:
        expect(f"GET /v1/jobs/{jid[:20]}", raw_request(gw.port, "GET", f"/v1/jobs/{jid}", user), "4xx")
        expect(f"cancel /v1/jobs/{jid[:20]}", raw_request(gw.port, "POST", f"/v1/jobs/{jid}/cancel", user), "4xx")
        expect(f"admin retry {jid[:20]}", raw_request(gw.port, "POST", f"/v1/admin/jobs/{jid}/retry", admin), "4xx")
    for label, headers in [("X-Request-Id 100 KB", [("X-Request-Id", b"r" * 100_000)]), ("X-Request-Id UTF-8", [("X-Request-Id", "ïd\u0301".encode())]),
                           ("Origin garbage", [("Origin", b"\xff\xfe")]), ("Content-Type garbage", [("Content-Type", b"application/json; charset=\xff")])]:
        expect(f"GET /healthz with {label}", raw_request(gw.port, "GET", "/healthz", headers), "not5xx")
        expect(f"POST /v1/jobs with {label}", create(plain, headers), "not5xx")
    expect("Content-Length larger than the body", raw_request(gw.port, "POST", "/v1/jobs", user + [("Content-Type", "application/json"), ("Content-Length", "100")], b"{}", timeout=3), "not5xx")
    expect("Content-Length 20 digits", raw_request(gw.port, "POST", "/v1/jobs", user + [("Content-Type", "application/json"), ("Content-Length", "99999999999999999999")], b"{}", timeout=5), "not5xx")
    expect("chunked body", raw_request(gw.port, "POST", "/v1/jobs", user + [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
                                        b"%x\r\n%s\r\n0\r\n\r\n" % (len(plain), plain)), "not5xx")
    gw.check("other routes")


# MARK: - main

def main():
    t_start = time.monotonic()
    redis_port, sim_port, jwks_port, http_port = (free_port() for _ in range(4))
    start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", TMP, "--loglevel", "warning"])
    # fal-sim: jobs stay running (long run delay), so our signed webhooks land on live tasks
    sim = start("fal-sim", [os.path.join(args.bin, "fal-sim"), "--host", "127.0.0.1", "--port", str(sim_port), "--key", "sim-key:sim-secret",
                            "--user-id", FAL_USER, "--queue-delay-ms", "0", "--run-delay-ms", "600000", "--concurrency", "100000"])
    wait_port(redis_port); wait_port(sim_port, 30, sim)
    sim_jwks = None
    end = time.monotonic() + 10
    while time.monotonic() < end and not sim_jwks:
        m = re.search(r"JWKS at (\S+)", open(os.path.join(TMP, "fal-sim.log"), errors="replace").read())
        sim_jwks = m and m.group(1)
        if not sim_jwks: time.sleep(0.1)
    jwks = serve_jwks(jwks_port, sim_jwks or f"http://127.0.0.1:{sim_port}/.well-known/jwks.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAPPER_", "FAL_"))}
    env.update(CLAPPER_HTTP_HOST="127.0.0.1", CLAPPER_HTTP_PORT=str(http_port), CLAPPER_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
               CLAPPER_REDIS_URL=f"redis://127.0.0.1:{redis_port}", FAL_KEY="sim-key:sim-secret",
               FAL_QUEUE_URL=f"http://127.0.0.1:{sim_port}", FAL_JWKS_URL=f"http://127.0.0.1:{jwks_port}/jwks.json",
               FAL_WEBHOOK_USER_ID=FAL_USER, CLAPPER_WEBHOOK_VERIFY="true", CLAPPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
               CLAPPER_AUTH_JWT_SECRET=JWT_SECRET, CLAPPER_ADMIN_TOKEN=ADMIN_TOKEN, CLAPPER_DEV_MODE="0",
               CLAPPER_RECONCILE_INTERVAL_MS="1000", CLAPPER_LOG_LEVEL="notice", CLAPPER_SSE_HEARTBEAT_SECONDS="1",
               # a trap exits at once with its one "Fatal error" line (no backtrace taking seconds),
               # so a crash is seen at the request that caused it
               SWIFT_BACKTRACE="enable=no")
    global GW
    gw = GW = Gateway(env, args.bin)
    gw.start()
    log(f"servers up in {TMP} (redis {redis_port}, fal-sim {sim_port}, clapper {http_port}); seed {SEED}, {EXAMPLES} examples per operation")

    # --- schemathesis: anonymous (every operation), as a user, as the admin
    checks = ["not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance"]
    if os.environ.get("CLAPPER_FUZZ_CHECKS"):  # e.g. "all": schemathesis's other checks, to look at
        checks = os.environ["CLAPPER_FUZZ_CHECKS"].split(",")
    no_streams = ["--exclude-path", "/v1/events", "--exclude-path", "/v1/jobs/{id}/events"]
    schemathesis_run("anonymous", http_port, [], checks + ([] if "all" in checks else ["ignored_auth"]))
    gw.check("schemathesis anonymous")
    schemathesis_run("user", http_port, ["-H", "Authorization: Bearer " + user_token(), "--exclude-path-regex", "^/v1/admin", *no_streams], checks)
    gw.check("schemathesis user")
    schemathesis_run("admin", http_port, ["-H", "Authorization: Bearer " + ADMIN_TOKEN, "--include-path-regex", "^/v1/admin"], checks)
    gw.check("schemathesis admin")

    # --- the battery
    jobs = [j for j in (create_job(gw, audio=(i % 3 == 0)) for i in range(6 if args.quick else 24)) if j]
    for j in jobs:
        j["_rid"] = job_request_id(gw, j["jobId"])
    if len(jobs) >= 2:
        battery_webhook_headers(gw, jobs)
        battery_webhook_tokens(gw, jobs)
        battery_webhook_bodies(gw, jobs)
        battery_other_routes(gw, jobs)

    # --- the end: alive, /healthz 200, no crash report in the log
    gw.check("the end")
    health = raw_request(http_port, "GET", "/healthz")
    if health is None or health.status != 200:
        fail("/healthz at the end", f"{health and health.status}")
    full_log = open(gw.log_path, errors="replace").read()
    if not crashes:
        for line in full_log.splitlines():
            if re.search(r"Fatal error|Crash", line):
                fail("crash line in the gateway log", line[:400])
    errors = [l for l in full_log.splitlines() if re.search(r"\b(error|critical)\b", l)]
    jwks.shutdown()
    elapsed = time.monotonic() - t_start

    # --- report
    print()
    print(f"ops/fuzz: seed {SEED}, {EXAMPLES} examples per operation, {elapsed:.0f} s")
    for s in stats.get("schemathesis", []):
        print(f"  schemathesis {s['run']}: exit {s['exit']}, {s['seconds']} s; " + "; ".join(s["summary"]))
    print(f"  battery: {counts['battery']} hostile requests")
    print(f"  gateway crashes: {len(crashes)}; restarts: {gw.restarts}")
    distinct = {}
    for c in crashes:
        key = re.sub(r"^.*?(Fatal error|Crash)", r"\1", c["log"][0]) if c["log"] else f"exit {c['exit']}"
        distinct.setdefault(key[:300], []).append(c["during"])
    for key, inputs in distinct.items():
        print(f"  crash: {key}\n    at: " + "; ".join(i[:80] for i in inputs))
    if errors:
        print(f"  {len(errors)} error-level log lines, first: {errors[0][:300]}")
    for n in notes[:30]:
        print(f"  note: {n}")
    if len(notes) > 30: print(f"  ({len(notes) - 30} more notes)")
    if failures:
        print(f"\nFAILED: {len(failures)} problem(s); logs and reports in {TMP}")
        for what, detail in failures:
            print(f"- {what}: {detail[:2000]}")
        return 1
    print("OK: no 5xx, no crash, /healthz 200")
    return 0


if __name__ == "__main__":
    code = 2
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    finally:
        stop_all()
        if code == 0 and not args.keep:
            shutil.rmtree(TMP, ignore_errors=True)
        elif os.path.isdir(TMP):
            print(f"(logs kept in {TMP})", file=sys.stderr)
    sys.exit(code)
