"""What ops/chaos and ops/soak share: the processes they start (redis-server, fal-sim, Clapper
instances) on free loopback ports with their logs in one temp dir, HS256 user tokens, a small
asyncio HTTP/1.1 client, and Clapper's configuration with a fast reconciler."""
import asyncio, base64, hashlib, hmac, json, os, re, shlex, signal, socket, subprocess, sys, time

VIDEO_MODEL, FAST_MODEL, SYNCED_MODEL = "fal-ai/ltx-video-13b-distilled", "cassetteai/sound-effects-generator", "fal-ai/mmaudio-v2"
MERGE_MODEL = "fal-ai/ffmpeg-api/merge-audio-video"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Stack:
    """The processes of one run; each logs to <tmp>/<name>.log; all stopped (by pid) on stop_all."""

    def __init__(self, tmp, t0):
        self.tmp, self.t0, self.procs = tmp, t0, []

    def log(self, msg):
        print(f"==> [{time.monotonic() - self.t0:5.1f} s] {msg}", file=sys.stderr, flush=True)

    def start(self, name, argv, env=None):
        out = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try: os.killpg(p.pid, signal.SIGTERM)
                except OSError: pass
        for p in reversed(self.procs):
            try: p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try: os.killpg(p.pid, signal.SIGKILL)
                except OSError: pass

    @staticmethod
    def user_token(secret, sub, lifetime=7200):
        """An HS256 JWT with `sub` and `exp`, as CLAPPER_AUTH_JWT_SECRET checks it."""
        head = b64url(b'{"alg":"HS256","typ":"JWT"}') + "." + b64url(json.dumps({"exp": int(time.time()) + lifetime, "sub": sub}).encode())
        return head + "." + b64url(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())


# MARK: - a small asyncio HTTP/1.1 client (Connection: close; Content-Length or chunked bodies)

class HTTPError(Exception):
    pass


NO_ANSWER = (OSError, HTTPError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError)


async def _open(port, method, path, headers, body, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None or method == "POST":
            lines.append(f"Content-Length: {len(body or b'')}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        m = re.match(rb"HTTP/1\.[01] (\d{3})", status_line)
        if not m:
            raise HTTPError(f"no status line ({status_line[:80]!r})")
        head = {}
        while True:
            line = await asyncio.wait_for(reader.readline(), timeout)
            if line in (b"\r\n", b"\n", b""): break
            k, _, v = line.decode("latin-1").partition(":")
            head[k.strip().lower()] = v.strip()
        return int(m.group(1)), head, reader, writer
    except BaseException:
        writer.close()
        raise


async def _body_chunks(reader, head):
    if head.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readline()
            if not size_line: return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0: return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in head:
        n = int(head["content-length"])
        if n: yield await reader.readexactly(n)
    else:
        while True:
            data = await reader.read(65536)
            if not data: return
            yield data


async def request(port, method, path, headers=None, body=None, timeout=10.0):
    """(status, headers, body bytes); raises one of NO_ANSWER when there is no answer."""
    status, head, reader, writer = await _open(port, method, path, headers or {}, body, timeout)
    try:
        out = b""
        async def read_all():
            nonlocal out
            async for chunk in _body_chunks(reader, head): out += chunk
        await asyncio.wait_for(read_all(), timeout)
        return status, head, out
    finally:
        writer.close()


# MARK: - the processes

class Instance:
    """One Clapper process; `start` again after a kill (same port, same public URL)."""

    def __init__(self, stack, binary, index, env):
        self.stack, self.binary, self.index, self.env, self.proc, self.kills = stack, binary, index, env, None, 0
        self.port = int(env["CLAPPER_HTTP_PORT"])

    @property
    def up(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        # CLAPPER_INSTANCE_WRAP runs each instance under a tool, `{index}` naming the instance, e.g.
        # "heaptrack -o /tmp/ht/clapper-{index}" (the samples then see the wrapper's process).
        wrap = os.environ.get("CLAPPER_INSTANCE_WRAP", "")
        argv = shlex.split(wrap.replace("{index}", str(self.index))) + [self.binary]
        self.proc = self.stack.start(f"clapper-{self.index}", argv, env=self.env)

    async def wait_ready(self, limit=60):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"clapper-{self.index} exited ({self.proc.returncode}); logs in {self.stack.tmp}")
            try:
                if (await request(self.port, "GET", "/readyz", timeout=2))[0] == 200: return
            except NO_ANSWER:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit(f"clapper-{self.index} not ready after {limit} s; logs in {self.stack.tmp}")


class RedisProc:
    """redis-server with AOF on (`appendfsync everysec`) in <tmp>/redis; restartable on the same dir."""

    def __init__(self, stack, port):
        self.stack, self.port, self.dir, self.proc = stack, port, os.path.join(stack.tmp, "redis"), None
        os.makedirs(self.dir, exist_ok=True)

    def start(self):
        self.proc = self.stack.start("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                                               "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--loglevel", "notice"])

    def wait_port(self, limit=30):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close(); return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"redis not listening after {limit} s; logs in {self.stack.tmp}")


def clapper_env(port, redis_port, sim_port, *, fal_user, webhook_secret, jwt_secret, admin_token, timeout_seconds=20, log_level="info"):
    """Clapper's environment: its own port and public URL, the shared Redis and fal-sim, fal-sim's
    JWKS, a fast reconciler (as Tests' ReconcileSetup: models expected at once, checks 0.5 s apart
    growing to 2 s, 1 s submit grace) and every model's timeoutSeconds = `timeout_seconds`."""
    t = timeout_seconds
    catalog = {
        "video": dict(id=VIDEO_MODEL, kind="video", input="text-to-video", outputMediaPath="video.url", minDurationSeconds=1,
                      maxDurationSeconds=10, expectedSeconds=0, timeoutSeconds=t, pricePerSecond=0.04, frameRate=24,
                      minFrames=9, maxFrames=241, frameMultiple=8, aspectRatios=["9:16", "1:1", "16:9"], resolutions=["480p", "720p"]),
        "audioTiers": {
            "fast": dict(id=FAST_MODEL, kind="audio", input="text-to-audio", outputMediaPath="audio_file.url", minDurationSeconds=1,
                         maxDurationSeconds=30, expectedSeconds=0, timeoutSeconds=t, pricePerSecond=0.001),
            "synced": dict(id=SYNCED_MODEL, kind="audio", input="video-to-audio", outputMediaPath="video.url", minDurationSeconds=1,
                           maxDurationSeconds=30, expectedSeconds=0, timeoutSeconds=t, pricePerSecond=0.001),
        },
        "defaultAudioTier": "fast",
        # Without it the merge model kept its default 600 s timeout: a merge submit whose outcome was
        # unknown (fal-sim's submit-503) was given up only then, long after the run's wait (seed 384488816).
        "merge": dict(id=MERGE_MODEL, kind="merge", input="merge-audio-video", outputMediaPath="video.url", minDurationSeconds=1,
                      maxDurationSeconds=3600, expectedSeconds=0, timeoutSeconds=t, pricePerSecond=0.0002),
    }
    policy = {"defaults": {"graceSeconds": 0, "baseSeconds": 0.5, "factor": 2, "maxSeconds": 2},
              "submitGraceSeconds": 1, "batchSize": 50, "leaseSeconds": 8, "concurrency": 16}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAPPER_", "FAL_"))}
    env.update(CLAPPER_HTTP_HOST="127.0.0.1", CLAPPER_HTTP_PORT=str(port), CLAPPER_PUBLIC_URL=f"http://127.0.0.1:{port}",
               CLAPPER_REDIS_URL=f"redis://127.0.0.1:{redis_port}", FAL_KEY="sim-key:sim-secret",
               FAL_QUEUE_URL=f"http://127.0.0.1:{sim_port}", FAL_JWKS_URL=f"http://127.0.0.1:{sim_port}/.well-known/jwks.json",
               FAL_WEBHOOK_USER_ID=fal_user, CLAPPER_WEBHOOK_SECRET=webhook_secret, CLAPPER_AUTH_JWT_SECRET=jwt_secret,
               CLAPPER_ADMIN_TOKEN=admin_token, CLAPPER_DEV_MODE="0", CLAPPER_RECONCILE_INTERVAL_MS="200",
               CLAPPER_RECONCILE_POLICY=json.dumps(policy), CLAPPER_MODEL_CATALOG=json.dumps(catalog),
               CLAPPER_FAL_SUBMIT_TIMEOUT_MS="3000", CLAPPER_SSE_HEARTBEAT_SECONDS="2", CLAPPER_LOG_LEVEL=log_level)
    return env
