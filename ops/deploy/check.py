#!/usr/bin/env python3
"""ops/deploy/check: Clapper behind ops/deploy/nginx-clapper.conf (ports, certificate and upstream
rewritten, nothing else), with a self-signed certificate, on loopback. Proves, through nginx over
TLS: a job is created; its event stream delivers the snapshot at once while the stream stays open
(no proxy buffering); a webhook signed as fal signs it verifies and completes the job, and the
stream gets the change and `done`; a forged signature is refused; the admin API and /metrics are
not served from outside (but are on Clapper's own loopback port); a 2 MB webhook is refused by
nginx. Exit 0 when every check holds."""
import argparse, hashlib, hmac, http.client, json, os, re, secrets, shutil, socket, ssl, subprocess, sys, tempfile, time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ap = argparse.ArgumentParser(prog="ops/deploy/check")
ap.add_argument("--bin", required=True, help="directory holding clapper and fal-sim")
ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
args = ap.parse_args()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "ops", "chaos.d"))
from harness import Stack, b64url, free_port  # the process helpers ops/chaos and ops/soak share

TMP = tempfile.mkdtemp(prefix="clapper-deploy.")
STACK = Stack(TMP, time.monotonic())
start = STACK.start
failures = []
FAL_USER = "deploy-check-fal-user"
WEBHOOK_SECRET = secrets.token_hex(32)
JWT_SECRET = secrets.token_hex(32)
ADMIN_TOKEN = secrets.token_hex(32)
KEY = Ed25519PrivateKey.generate()


def log(msg): print(f"==> {msg}", flush=True)


def check(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok: failures.append(what)


def wait_port(port, limit=30):
    end = time.monotonic() + limit
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0: return
        if time.monotonic() > end: raise SystemExit(f"nothing listens on {port} after {limit} s; logs in {TMP}")
        time.sleep(0.05)


def main():
    # --- certificate, servers
    cert, key = os.path.join(TMP, "cert.pem"), os.path.join(TMP, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], check=True, capture_output=True)
    redis_port, sim_port, jwks_port, clapper_port, nginx_port = (free_port() for _ in range(5))
    start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", TMP])
    jwks_dir = os.path.join(TMP, "jwks"); os.makedirs(jwks_dir)
    raw = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    open(os.path.join(jwks_dir, "jwks.json"), "w").write(json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}]}))
    start("jwks", [sys.executable, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1", "--directory", jwks_dir])
    # fal-sim's webhooks are dropped: this script signs the webhook itself, as fal would, and sends
    # it through nginx's TLS (fal-sim's URLSession would not trust a self-signed certificate).
    start("fal-sim", [os.path.join(args.bin, "fal-sim"), "--host", "127.0.0.1", "--port", str(sim_port), "--key", "sim-key:sim-secret",
                      "--user-id", FAL_USER, "--fault", "drop-webhook"])
    for port in (redis_port, jwks_port, sim_port): wait_port(port)
    public = f"https://127.0.0.1:{nginx_port}"
    env = dict(os.environ, CLAPPER_HTTP_HOST="127.0.0.1", CLAPPER_HTTP_PORT=str(clapper_port), CLAPPER_PUBLIC_URL=public,
               CLAPPER_REDIS_URL=f"redis://127.0.0.1:{redis_port}", FAL_KEY="sim-key:sim-secret", FAL_QUEUE_URL=f"http://127.0.0.1:{sim_port}",
               FAL_JWKS_URL=f"http://127.0.0.1:{jwks_port}/jwks.json", FAL_WEBHOOK_USER_ID=FAL_USER, CLAPPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
               CLAPPER_AUTH_JWT_SECRET=JWT_SECRET, CLAPPER_ADMIN_TOKEN=ADMIN_TOKEN, CLAPPER_LOG_LEVEL="warning")
    start("clapper", [os.path.join(args.bin, "clapper")], env=env)
    wait_port(clapper_port)

    # The site file as shipped, with only its ports, certificate and upstream rewritten.
    site = open(os.path.join(ROOT, "ops/deploy/nginx-clapper.conf")).read()
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{clapper_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{nginx_port} ssl http2;")
    site = re.sub(r"\n\s*listen \[::\]:443 ssl http2;", "", site)
    site = site.replace("/etc/ssl/clapper/fullchain.pem", cert).replace("/etc/ssl/clapper/privkey.pem", key)
    open(os.path.join(TMP, "site.conf"), "w").write(site)
    open(os.path.join(TMP, "nginx.conf"), "w").write(f"""
daemon off;
worker_processes 1;
pid {TMP}/nginx.pid;
error_log {TMP}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {TMP}/body; proxy_temp_path {TMP}/proxy; fastcgi_temp_path {TMP}/fastcgi;
    uwsgi_temp_path {TMP}/uwsgi; scgi_temp_path {TMP}/scgi;
    include {TMP}/site.conf;
}}
""")
    start("nginx", ["nginx", "-p", TMP, "-c", os.path.join(TMP, "nginx.conf")])
    wait_port(nginx_port)
    log(f"up in {TMP}: redis {redis_port}, fal-sim {sim_port}, clapper {clapper_port}, nginx (TLS) {nginx_port}")

    tls = ssl.create_default_context(cafile=cert)

    def request(method, path, body=None, headers=None, direct=False):
        conn = http.client.HTTPConnection("127.0.0.1", clapper_port, timeout=10) if direct else \
            http.client.HTTPSConnection("127.0.0.1", nginx_port, context=tls, timeout=10)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    user = "deploy-check-user"
    auth = {"Authorization": f"Bearer {Stack.user_token(JWT_SECRET, user)}", "Content-Type": "application/json"}

    # --- a job through nginx
    status, data = request("POST", "/v1/jobs", json.dumps({"prompt": "a lighthouse", "durationSeconds": 2}).encode(), auth)
    check(status == 202, f"POST /v1/jobs through nginx: 202 (got {status})")
    job = json.loads(data)
    job_id, events_url = job["jobId"], job["eventsUrl"]
    check(events_url.startswith(public), f"eventsUrl is the public https URL ({events_url[:60]}…)")

    # --- its event stream: the snapshot arrives while the stream stays open (nothing buffered)
    path = events_url[len(public):]
    stream = tls.wrap_socket(socket.create_connection(("127.0.0.1", nginx_port)), server_hostname="127.0.0.1")
    stream.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    stream.settimeout(10)
    received, opened = b"", time.monotonic()
    while b"event: snapshot" not in received or b"\n\n" not in received[received.index(b"event: snapshot"):]:
        chunk = stream.recv(65536)
        if not chunk: break
        received += chunk
    snapshot_after = time.monotonic() - opened
    check(b"event: snapshot" in received and snapshot_after < 3,
          f"the snapshot arrived through nginx {snapshot_after * 1000:.0f} ms after the stream opened, the stream still open")

    # --- fal's webhook, signed as fal signs it, through nginx
    request_id = None
    for _ in range(200):
        status, data = request("GET", f"/v1/jobs/{job_id}", headers=auth)
        request_id = json.loads(data).get("videoRequestId")
        if request_id: break
        time.sleep(0.05)
    check(request_id is not None, "fal-sim accepted the video submit")

    def webhook(body, signature=None):
        ts = str(int(time.time()))
        message = f"{request_id}\n{FAL_USER}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
        token = hmac.new(WEBHOOK_SECRET.encode(), f"{job_id}:video".encode(), hashlib.sha256).hexdigest()
        return request("POST", f"/v1/webhooks/fal/{job_id}/video?token={token}", body, {
            "Content-Type": "application/json", "X-Fal-Webhook-Request-Id": request_id, "X-Fal-Webhook-User-Id": FAL_USER,
            "X-Fal-Webhook-Timestamp": ts, "X-Fal-Webhook-Signature": signature or KEY.sign(message).hex()})

    body = json.dumps({"request_id": request_id, "gateway_request_id": request_id, "status": "OK", "error": None,
                       "payload": {"video": {"url": f"https://fal.media/files/{request_id}.mp4", "content_type": "video/mp4"}}},
                      separators=(", ", ": "), sort_keys=True).encode()
    status, _ = webhook(body, signature="00" * 64)
    check(status == 401, f"a webhook with a forged signature through nginx: 401 (got {status})")
    status, data = webhook(body)
    check(status == 200, f"a webhook signed as fal signs it, through nginx: 200 (got {status} {data[:120]!r})")
    status, _ = webhook(b"{" + b" " * (2 * 1024 * 1024) + b"}")
    check(status == 413, f"a 2 MB webhook: refused by nginx with 413 (got {status})")

    while b"event: done" not in received:
        try:
            chunk = stream.recv(65536)
        except socket.timeout:
            break
        if not chunk: break
        received += chunk
    stream.close()
    check(b'"videoStatus":"completed"' in received and b"event: done" in received,
          "the stream got the completed job and `done` through nginx")

    # --- operators only
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    status, _ = request("GET", "/v1/admin/jobs", headers=admin)
    check(status == 404, f"/v1/admin through nginx: 404 even with the admin token (got {status})")
    status, _ = request("GET", "/metrics")
    check(status == 404, f"/metrics through nginx: 404 (got {status})")
    status, _ = request("GET", "/v1/admin/jobs", headers=admin, direct=True)
    check(status == 200, f"/v1/admin on Clapper's own loopback port: 200 (got {status})")


completed = False
def check_unit():
    """The systemd unit as shipped (binary and settings paths pointed at this run) passes
    `systemd-analyze verify`, and `systemd-analyze security` rates its exposure."""
    if shutil.which("systemd-analyze") is None:
        print("  skip systemd-analyze is not installed: the unit is not checked")
        return
    unit = open(os.path.join(ROOT, "ops/deploy/clapper.service")).read()
    unit = unit.replace("/usr/local/bin/clapper", os.path.join(os.path.abspath(args.bin), "clapper"))
    unit = unit.replace("EnvironmentFile=/etc/clapper/clapper.env", f"EnvironmentFile=-{TMP}/clapper.env")
    path = os.path.join(TMP, "clapper.service")
    open(path, "w").write(unit)
    verify = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
    check(verify.returncode == 0 and not verify.stderr.strip(), f"systemd-analyze verify clapper.service {verify.stderr.strip()[:200]}")
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", path], capture_output=True, text=True)
    level = re.search(r"Overall exposure level for clapper.service: ([\d.]+)", security.stdout)
    check(level is not None and float(level.group(1)) <= 2.0, f"systemd-analyze security: exposure {level.group(1) if level else '?'} (at most 2.0)")


try:
    check_unit()
    main()
    completed = True
finally:
    STACK.stop_all()
    if failures or not completed:
        print(f"ops/deploy/check FAILED: {len(failures)} check(s){'' if completed else ', stopped early'}; logs in {TMP}")
        sys.exit(1)
    if not args.keep:
        shutil.rmtree(TMP, ignore_errors=True)
    print("ops/deploy/check passed")
