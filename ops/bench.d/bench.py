#!/usr/bin/env python3
"""ops/bench's driver: starts redis-server, fal-sim, a JWKS file server, Clapper (release) and
nginx+nchan on loopback, runs each measurement at least 3 times, prints one table and writes it
to bench/results/<date>.md. Everything it starts is stopped on exit (by pid)."""
import datetime, hashlib, hmac, http.server, json, os, re, resource, secrets, signal, socket
import statistics, subprocess, sys, tempfile, threading, time, uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QUICK = "--quick" in sys.argv
# CLAPPER_BENCH_ONLY=fanout,idle runs only those sections (ceilings, ingest, latency, fanout, cluster, governor, idle):
# for a quick A/B of one figure; the table says n/a for the rest.
ONLY = set(filter(None, os.environ.get("CLAPPER_BENCH_ONLY", "").split(",")))
wanted = lambda section: not ONLY or section in ONLY
BIN = sys.argv[sys.argv.index("--bin") + 1]  # clapper and fal-sim
TOOL = sys.argv[sys.argv.index("--tool") + 1]  # clapper-bench, built from Benchmarks/
RUNS = 3
WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef"
FAL_USER = "bench-user"
TMP = tempfile.mkdtemp(prefix="clapper-bench.")
procs = []
SSE_RATE = max(1, int(os.environ.get("CLAPPER_BENCH_SSE_RATE", 1000)))
# Hard stop of the whole run; CLAPPER_BENCH_DEADLINE=<seconds> lengthens it on a loaded machine.
deadline = time.monotonic() + int(os.environ.get("CLAPPER_BENCH_DEADLINE", 170 if QUICK else 1500))


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def start_perf(section, clapper):
    """CLAPPER_BENCH_PERF=<file>: a cpu-clock profile of Clapper during the first run of the section
    CLAPPER_BENCH_PERF_SECTION names (ingest, the default: distinct webhooks; sse1000, sse10000; fanout1000,
    fanout10000).
    CLAPPER_BENCH_PERF_ALL=1: every process on the machine (Redis and the load tool too)."""
    if not os.environ.get("CLAPPER_BENCH_PERF") or os.environ.get("CLAPPER_BENCH_PERF_SECTION", "ingest") != section:
        return None
    target = ["-a"] if os.environ.get("CLAPPER_BENCH_PERF_ALL") else ["-p", str(clapper.pid)]
    perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", *target,
                             "-o", os.environ["CLAPPER_BENCH_PERF"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return perf


def stop_perf(perf):
    if perf:
        perf.send_signal(signal.SIGINT); perf.wait(timeout=60)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port


def wait_port(port, limit=30):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close(); return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {limit}s")


def start(name, argv, env=None):
    out = open(os.path.join(TMP, f"{name}.log"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    procs.append(p)
    return p


def stop_all():
    for p in reversed(procs):
        if p.poll() is None:
            try: os.killpg(p.pid, signal.SIGTERM)
            except OSError: pass
    for p in reversed(procs):
        try: p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try: os.killpg(p.pid, signal.SIGKILL)
            except OSError: pass


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime


def run_timed(argv, limit):
    """Runs a load generator; returns (stdout, its CPU seconds, wall seconds)."""
    c0, t0 = child_cpu(), time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    if out.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {out.stderr[:1500]}")
    return out.stdout, child_cpu() - c0, time.monotonic() - t0


def tool(mode, limit=90, **flags):
    argv = [TOOL, mode, "--timeout", str(limit - 10)]
    for k, v in flags.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    stdout, _, _ = run_timed(argv, limit)
    result = json.loads(stdout.strip().splitlines()[-1])
    if result.get("error"): raise SystemExit(f"clapper-bench {mode}: {result['error']}")
    return result


# MARK: - a small RESP client (setup only; nothing measured goes through it)

class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port)); self.f = self.sock.makefile("rb")

    @staticmethod
    def encode(args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            parts += [b"$%d\r\n" % len(a), a, b"\r\n"]
        return b"".join(parts)

    def read(self):
        line = self.f.readline(); kind, rest = line[:1], line[1:-2]
        if kind == b"+": return rest.decode()
        if kind == b"-": raise RuntimeError(rest.decode())
        if kind == b":": return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0: return None
            data = self.f.read(n + 2); return data[:-2]
        if kind == b"*":
            n = int(rest); return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"bad reply {line!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(args)); return self.read()

    def calls(self, command):
        """How many times `command` ran on this Redis so far (INFO commandstats)."""
        m = re.search(rb"^cmdstat_%s:calls=(\d+)" % command.encode(), self.call("INFO", "commandstats"), re.M)
        return int(m.group(1)) if m else 0

    def pipeline(self, commands, chunk=500):
        replies = []
        for i in range(0, len(commands), chunk):
            batch = commands[i:i + chunk]
            self.sock.sendall(b"".join(self.encode(c) for c in batch))
            replies += [self.read() for _ in batch]
        return replies


def lua_apply_script():
    """JobScripts.apply, read out of the Swift source: the script ops/bench runs is Clapper's."""
    text = open(os.path.join(ROOT, "Sources/Clapper/Store/JobScripts.swift")).read()
    # `static let apply = RedisScript(#"""` (or with the literal on the next line, as swift-format
    # writes it); Swift strips the closing delimiter's indentation from every line, and so does this.
    match = re.search(r'\bapply = RedisScript\(\s*#"""\n(.*?)\n([ \t]*)"""#', text, re.S)
    body, indent = match.group(1), match.group(2)
    return "\n".join(line[len(indent):] if line.startswith(indent) else line for line in body.splitlines())


# MARK: - Ed25519 signing (fal's scheme) and the JWKS Clapper fetches

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
import base64

SIGNING_KEY = Ed25519PrivateKey.generate()


def jwks_document():
    raw = SIGNING_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench"}]}).encode()


def webhook_request(job_id, request_id, port):
    body = json.dumps({"request_id": request_id, "gateway_request_id": request_id, "status": "OK",
                       "payload": {"video": {"url": f"http://127.0.0.1:1/_sim/media/video/{request_id}.mp4",
                                             "content_type": "video/mp4", "file_name": "v.mp4", "file_size": 123456}}},
                      separators=(", ", ": ")).encode()
    ts = str(int(time.time()))
    message = f"{request_id}\n{FAL_USER}\n{ts}\n{hashlib.sha256(body).hexdigest()}".encode()
    signature = SIGNING_KEY.sign(message).hex()
    token = hmac.new(WEBHOOK_SECRET.encode(), f"{job_id}:video".encode(), hashlib.sha256).hexdigest()
    head = (f"POST /v1/webhooks/fal/{job_id}/video?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nX-Fal-Webhook-Request-Id: {request_id}\r\n"
            f"X-Fal-Webhook-User-Id: {FAL_USER}\r\nX-Fal-Webhook-Timestamp: {ts}\r\n"
            f"X-Fal-Webhook-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def write_records(path, records):
    with open(path, "wb") as f:
        for key, raw in records:
            f.write(f"{key} {len(raw)}\n".encode()); f.write(raw)
    return path


def write_paths(path, pairs):
    with open(path, "w") as f:
        for key, p in pairs: f.write(f"{key} {p}\n")
    return path


# MARK: - figures

rss_after_fanout = 0
results = {}  # name -> list of per-run dicts


def record(name, value):
    results.setdefault(name, []).append(value)


def process_cpu_seconds(pid):
    # utime and stime, fields 14 and 15 of /proc/<pid>/stat (after the parenthesised name).
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_measured(pid, port, path, n, redis=None):
    """clapper-bench post of the `n` requests in `path` (c=64), with the CPU time (user + system, from
    /proc) process `pid` spent per request: steadier than req/s on a shared VM, where other tenants
    take cycles (one run here saw Redis's EVALSHA ceiling at a third). With `redis`, also the job
    reads (HMGET) Redis served per request."""
    cpu_before = process_cpu_seconds(pid)
    reads_before = redis.calls("hmget") if redis else 0
    result = tool("post", port=port, requests=path, concurrency=64)
    result["clapper_cpu_us"] = (process_cpu_seconds(pid) - cpu_before) / max(n, 1) * 1e6
    if redis: result["reads_per_request"] = (redis.calls("hmget") - reads_before) / max(n, 1)
    return result


def med(name, key):
    values = [r[key] for r in results.get(name, []) if isinstance(r.get(key), (int, float)) and r[key] >= 0]
    return (statistics.median(values), min(values), max(values), len(values)) if values else None


def fmt(stat, unit="", digits=0):
    if not stat: return "n/a"
    m, lo, hi, n = stat
    f = lambda v: f"{v:,.{digits}f}"
    return f"{f(m)}{unit} ({f(lo)}–{f(hi)}, n={n})"


def main():
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    quiet_start = subprocess.run("pgrep -fc 'swift-build|swift-test' || true", shell=True, capture_output=True, text=True).stdout.strip()
    load_start = open("/proc/loadavg").read().split()[:3]

    # --- servers
    redis_port, sim_port, jwks_port, http_port, nginx_port = (free_port() for _ in range(5))
    start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--dir", TMP, "--loglevel", "warning"])
    wait_port(redis_port)
    jwks_dir = os.path.join(TMP, "jwks"); os.makedirs(jwks_dir)
    open(os.path.join(jwks_dir, "jwks.json"), "wb").write(jwks_document())
    start("jwks", [sys.executable, "-m", "http.server", str(jwks_port), "--bind", "127.0.0.1", "--directory", jwks_dir])
    start("fal-sim", [os.path.join(BIN, "fal-sim"), "--host", "127.0.0.1", "--port", str(sim_port), "--key", "sim-key:sim-secret",
                      "--user-id", FAL_USER, "--queue-delay-ms", "0", "--run-delay-ms", "0", "--concurrency", "100000",
                      "--fault", "drop-webhook"])
    wait_port(jwks_port); wait_port(sim_port)
    env = dict(os.environ,
               CLAPPER_HTTP_HOST="127.0.0.1", CLAPPER_HTTP_PORT=str(http_port), CLAPPER_PUBLIC_URL=f"http://127.0.0.1:{http_port}",
               CLAPPER_REDIS_URL=f"redis://127.0.0.1:{redis_port}", FAL_KEY="sim-key:sim-secret",
               FAL_QUEUE_URL=f"http://127.0.0.1:{sim_port}", FAL_JWKS_URL=f"http://127.0.0.1:{jwks_port}/jwks.json",
               FAL_WEBHOOK_USER_ID=FAL_USER, CLAPPER_WEBHOOK_VERIFY="true", CLAPPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
               CLAPPER_DEV_MODE="1", CLAPPER_SSE_MAX_STREAMS_PER_USER="0", CLAPPER_RECONCILE_INTERVAL_MS="0", CLAPPER_LOG_LEVEL="warning")
    def start_clapper():
        p = start("clapper", [os.path.join(BIN, "clapper")], env=env); wait_port(http_port); return p
    clapper = start_clapper()
    conf = open(os.path.join(ROOT, "ops/bench.d/nginx.conf")).read().replace("@TMP@", TMP) \
        .replace("@PORT@", str(nginx_port)).replace("@REDIS_PORT@", str(redis_port))
    open(os.path.join(TMP, "nginx.conf"), "w").write(conf)
    def start_nginx():
        p = start("nginx", ["nginx", "-e", os.path.join(TMP, "nginx-error.log"), "-p", TMP, "-c", os.path.join(TMP, "nginx.conf")])
        wait_port(nginx_port); return p
    nginx = start_nginx()
    redis = Redis(redis_port)
    sha = redis.call("SCRIPT", "LOAD", lua_apply_script())
    log(f"servers up in {TMP} (redis {redis_port}, fal-sim {sim_port}, clapper {http_port}, nginx+nchan {nginx_port})")

    # --- 6. Jobs API (and the template job the other sections clone)
    n_jobs = 300 if QUICK else 1000
    for run in range(RUNS):
        body = lambda i: json.dumps({"prompt": f"bench run {run} job {i}", "durationSeconds": 2, "feature": {"audio": False}}).encode()
        recs = [(f"j{run}-{i}", (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                  f"Content-Length: {len(body(i))}\r\n\r\n").encode() + body(i)) for i in range(n_jobs)]
        record("jobs", tool("post", port=http_port, requests=write_records(os.path.join(TMP, "jobs.req"), recs), concurrency=32))
    log(f"jobs API: {fmt(med('jobs', 'rps'), ' jobs/s')}")

    key = redis.call("SCAN", 0, "MATCH", "clapper:{*}:job", "COUNT", 1000)[1][0].decode()
    template_id = key[len("clapper:{"):-len("}:job")]
    version, user, doc, view = redis.call("HMGET", key, "version", "user", "doc", "view")
    template_request = json.loads(view)["videoRequestId"]
    assert json.loads(view)["status"] not in ("completed", "failed", "canceled"), "template job already finished"

    def clone(n, seen=False):
        """n new unfinished jobs written with JobScripts.apply itself (as the create path does).
        seen=True publishes each on Clapper's events channel with its doc, as a job created or
        submitted by any instance is (so Clapper caches it and its webhook needs no read first);
        seen=False publishes elsewhere: jobs this instance never saw (a restarted instance, or
        more jobs in flight than its cache holds)."""
        channel = "clapper:events" if seen else "bench:setup"
        jobs, commands = [], []
        for _ in range(n):
            job_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
            d = doc.replace(template_id.encode(), job_id.encode()).replace(template_request.encode(), request_id.encode())
            v = view.replace(template_id.encode(), job_id.encode()).replace(template_request.encode(), request_id.encode())
            u = user.decode()
            commands.append(["EVALSHA", sha, 10, f"clapper:{{{job_id}}}:job", f"clapper:{{{job_id}}}:events", "clapper:due",
                             "clapper:requests", f"clapper:user:{{{u}}}:jobs", f"clapper:{{{job_id}}}:job",
                             f"clapper:user:{{{u}}}:active", f"clapper:user:{{{u}}}:rate", f"clapper:spend:{{{u}}}:bench", f"clapper:user:{{{u}}}:limits",
                             0, version, d, v, channel, json.dumps(job_id), json.dumps(u), 100, user, "", 0, 0,
                             "hset", request_id, f"{job_id}|video", *(["doc", "-", "-"] if seen else [])])
            jobs.append((job_id, request_id))
        for reply in redis.pipeline(commands):
            assert reply[0] == 1, reply
        return jobs

    # --- 1. ceilings
    if wanted("ceilings"):
        bench_n = 20000 if QUICK else 100000
        rb_args = ["EVALSHA", sha, "10", "bench:{__rand_int__}:job", "bench:{__rand_int__}:events", "bench:due", "bench:requests",
                   "bench:user:{dev}:jobs", "bench:{__rand_int__}:job", "bench:user:{dev}:active", "bench:user:{dev}:rate",
                   "bench:spend:{dev}:day", "bench:user:{dev}:limits", "0", version.decode(), doc.decode(), view.decode(), "bench:ceiling",
                   json.dumps(template_id), json.dumps(user.decode()), "100", user.decode(), "", "0", "0", "hset", template_request, "m|video",
                   "doc", "-", "-"]
        message = '{"jobId":%s,"userId":%s,"id":"1-1","job":%s}' % (json.dumps(template_id), json.dumps(user.decode()), view.decode())
        for run in range(RUNS):
            for name, args in (("evalsha", rb_args), ("publish", ["PUBLISH", "bench:ceiling", message])):
                out, cpu, wall = run_timed(["redis-benchmark", "-p", str(redis_port), "-n", str(bench_n), "-c", "32", "-r", "100000000", "--csv", *args], 120)
                # The last 7 CSV fields: rps, avg, min, p50, p95, p99, max (the test name holds commas).
                row = [float(v) for v in re.findall(r'"([0-9.]+)"', out.strip().splitlines()[-1])[-7:]]
                record(name, {"rps": row[0], "p50_ms": row[3], "p99_ms": row[5], "tool_cpu_percent": cpu / wall * 100})
            secs = 3 if QUICK else 5
            cpu_before = process_cpu_seconds(clapper.pid)
            out, cpu, wall = run_timed(["wrk", "-t1", "-c64", f"-d{secs}s", "--latency", f"http://127.0.0.1:{http_port}/healthz"], secs + 30)
            served = int(re.search(r"(\d+) requests in", out).group(1))
            record("healthz", {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                               "p50_ms": wrk_ms(out, "50%"), "p99_ms": wrk_ms(out, "99%"), "tool_cpu_percent": cpu / wall * 100,
                               "clapper_cpu_us": (process_cpu_seconds(clapper.pid) - cpu_before) / max(served, 1) * 1e6})
        redis.call("DEL", "bench:due", "bench:requests", "bench:user:{dev}:jobs", "bench:user:{dev}:active")
        log(f"ceilings: evalsha {fmt(med('evalsha', 'rps'))}/s, publish {fmt(med('publish', 'rps'))}/s, healthz {fmt(med('healthz', 'rps'))}/s "
            f"({fmt(med('healthz', 'clapper_cpu_us'))} µs of Clapper CPU each)")

    # --- 2. webhook ingest: distinct, then the same webhooks again (duplicates)
    if wanted("ingest"):
        # 8,000: within the 8,192 jobs Clapper's cache holds, so every job seen is still there.
        n_hooks = int(os.environ.get("CLAPPER_BENCH_HOOKS", 2000 if QUICK else 8000))
        def hooks_for(seen):
            """A records file of one signed webhook for each of n_hooks new jobs."""
            jobs = clone(n_hooks, seen=seen)
            return write_records(os.path.join(TMP, "hooks.req"), [(j, webhook_request(j, r, http_port)) for j, r in jobs])

        for run in range(RUNS):
            path = hooks_for(seen=True)
            perf = start_perf("ingest", clapper) if run == 0 else None
            record("ingest", post_measured(clapper.pid, http_port, path, n_hooks, redis))
            stop_perf(perf)
            record("ingest_dup", post_measured(clapper.pid, http_port, path, n_hooks, redis))
            record("ingest_cold", post_measured(clapper.pid, http_port, hooks_for(seen=False), n_hooks, redis))
        log(f"ingest: {fmt(med('ingest', 'rps'))}/s ({fmt(med('ingest', 'clapper_cpu_us'))} µs of Clapper CPU, "
            f"{fmt(med('ingest', 'reads_per_request'), '', 2)} reads each; never seen {fmt(med('ingest_cold', 'reads_per_request'), '', 2)}), "
            f"jobs never seen {fmt(med('ingest_cold', 'rps'))}/s ({fmt(med('ingest_cold', 'clapper_cpu_us'))} µs each), "
            f"duplicates {fmt(med('ingest_dup', 'rps'))}/s ({fmt(med('ingest_dup', 'clapper_cpu_us'))} µs each)")

    # --- 3. webhook -> SSE at 1,000 webhooks/s with S streams open. CLAPPER_BENCH_SSE_RATE=<n/s> runs
    # sections 3 and 3b at another rate (each run then sends at most 4 seconds' worth); a low rate
    # shows what one change costs end to end on an idle machine, where every hop wakes a sleeping thread.
    if wanted("latency"):
        for streams in (1000, 10000):
            hooks = min(1000 if streams == 1000 else (2000 if QUICK else 3000), SSE_RATE * 4)
            for run in range(RUNS):
                jobs = clone(streams, seen=True)
                paths = write_paths(os.path.join(TMP, "sse.paths"), [(j, f"/v1/jobs/{j}/events") for j, _ in jobs])
                # The jobs cloned last: past 8,192 the cache lets the first ones go.
                reqs = write_records(os.path.join(TMP, "sse.req"), [(j, webhook_request(j, r, http_port)) for j, r in jobs[-hooks:]])
                perf = start_perf(f"sse{streams}", clapper) if run == 0 else None
                record(f"sse{streams}", tool("sse", limit=120, port=http_port, paths=paths, post_port=http_port, requests=reqs, rate=SSE_RATE, concurrency=32))
                stop_perf(perf)
            log(f"webhook->SSE with {streams} streams: p99 {fmt(med(f'sse{streams}', 'p99_ms'), ' ms', 2)}")

        # --- 3b. the same for nchan: publish -> subscriber at 1,000 publishes/s over 10,000 channels,
        # one subscriber each; the message is a job view of the same size, named `job` (X-EventSource-Event)
        streams, hooks = 10000, min(2000 if QUICK else 3000, SSE_RATE * 4)
        for run in range(RUNS):
            keys = [f"c{i}" for i in range(streams)]
            paths = write_paths(os.path.join(TMP, "nchan.paths"), [(k, f"/sub/lat{run}x{k}") for k in keys])
            reqs = write_records(os.path.join(TMP, "nchan.req"), [(k, (
                f"POST /pub/lat{run}x{k} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-EventSource-Event: job\r\nContent-Length: {len(view)}\r\n\r\n").encode() + view) for k in keys[:hooks]])
            record("sse_nchan10000", tool("sse", limit=120, port=nginx_port, paths=paths, post_port=nginx_port, requests=reqs, rate=SSE_RATE, concurrency=32))
        log(f"nchan publish->subscriber with {streams} channels: p99 {fmt(med('sse_nchan10000', 'p99_ms'), ' ms', 2)}")

    # --- 4. fan-out: one job (one channel) with N subscribers
    if wanted("fanout"):
        fan_job = clone(1)[0][0]
        fan_view = view.replace(template_id.encode(), fan_job.encode()).decode()
        template_path = os.path.join(TMP, "fanout.msg")
        open(template_path, "w").write('{"jobId":%s,"userId":%s,"id":"@ID@","job":{"bseq":@SEQ@,%s}' % (json.dumps(fan_job), json.dumps(user.decode()), fan_view[1:]))
        for n in (1000, 10000):
            events = (30 if n == 1000 else 10) if QUICK else (100 if n == 1000 else 30)
            for run in range(RUNS):
                # Server CPU and write syscalls per delivered event, from the first publish to the last
                # delivery (the tool reads /proc): steadier than events/s on this shared VM.
                perf = start_perf(f"fanout{n}", clapper) if run == 0 else None
                record(f"fan_clapper{n}", tool("fanout", limit=120, port=http_port, path=f"/v1/jobs/{fan_job}/events", n=n, events=events, window=4,
                                                redis_port=redis_port, channel="clapper:events", message_template=template_path, pids=clapper.pid))
                stop_perf(perf)
                nginx_pids = [int(p) for p in subprocess.run(["pgrep", "-s", str(nginx.pid)], capture_output=True, text=True).stdout.split()]
                record(f"fan_nchan{n}", tool("fanout", limit=120, port=nginx_port, path=f"/sub/fan{run}", n=n, events=events, window=4,
                                              publish_port=nginx_port, publish_path=f"/pub/fan{run}", pids=",".join(map(str, nginx_pids))))
            log(f"fan-out {n}: clapper {fmt(med(f'fan_clapper{n}', 'events_per_s'))}/s, nchan {fmt(med(f'fan_nchan{n}', 'events_per_s'))}/s")

    # --- 7. Redis Cluster: the same gateway on 3 masters (no replicas) vs 1 node, both fresh
    if wanted("cluster"):
        cluster_section(env)

    # --- 8. The fal governor: jobs through CLAPPER_FAL_CONCURRENCY vs without it
    if wanted("governor"):
        governor_section(env)

    global rss_after_fanout
    rss_after_fanout = int(next(l.split()[1] for l in open(f"/proc/{clapper.pid}/status") if l.startswith("VmRSS")))

    # --- 5. idle connections: RSS delta / N (50,000 cannot be opened here: hard RLIMIT_NOFILE)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    idle_sizes = ([10000] + ([] if QUICK else [min(50000, nofile - 2000)])) if wanted("idle") else []
    if wanted("idle"):
        def restart(p, starter):
            """A fresh process per idle run: a used one keeps freed memory and hides the delta."""
            os.killpg(p.pid, signal.SIGTERM); p.wait(timeout=20); time.sleep(0.5); return starter()
        for size in idle_sizes:
            for run in range(RUNS):
                clapper = restart(clapper, start_clapper); nginx = restart(nginx, start_nginx); time.sleep(1)
                nginx_pids = [int(p) for p in subprocess.run(["pgrep", "-s", str(nginx.pid)], capture_output=True, text=True).stdout.split()]
                jobs = clone(size)
                paths = write_paths(os.path.join(TMP, "idle.paths"), [(j, f"/v1/jobs/{j}/events") for j, _ in jobs])
                record(f"idle_clapper{size}", tool("idle", limit=150, port=http_port, paths=paths, pids=clapper.pid, settle=2))
                paths = write_paths(os.path.join(TMP, "idle.paths"), [(f"c{i}", f"/sub/idle{run}x{i}") for i in range(size)])
                record(f"idle_nchan{size}", tool("idle", limit=150, port=nginx_port, paths=paths, pids=",".join(map(str, nginx_pids)), settle=2))
            log(f"idle {size}: clapper {fmt(med(f'idle_clapper{size}', 'kb_per_stream'), ' KB', 1)}, nchan {fmt(med(f'idle_nchan{size}', 'kb_per_stream'), ' KB', 1)}")

    # CLAPPER_BENCH_METRICS=<file>: Clapper's /metrics at the end of the run (its own histograms of
    # webhook handling, HTTP requests and event delivery lag, for the sections that ran; after the idle
    # section, of the process it restarted last).
    if os.environ.get("CLAPPER_BENCH_METRICS"):
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            reply = b"".join(iter(lambda: s.recv(65536), b""))
        open(os.environ["CLAPPER_BENCH_METRICS"], "wb").write(reply)

    quiet_end = subprocess.run("pgrep -fc 'swift-build|swift-test' || true", shell=True, capture_output=True, text=True).stdout.strip()
    load_end = open("/proc/loadavg").read().split()[:3]
    report(idle_sizes, nofile, quiet_start, quiet_end, load_start, load_end)


def scan_jobs(port):
    """{job id: (job key, port)} of the job hashes on one node, single-node or cluster layout."""
    found, cursor, r = {}, 0, Redis(port)
    while True:
        cursor, keys = r.call("SCAN", cursor, "MATCH", "clapper:*job*", "COUNT", 5000)
        for k in keys:
            k = k.decode()
            if k.endswith("}:job"): found[k[len("clapper:{"):-len("}:job")]] = (k, port)  # clapper:{id}:job
            elif ":job:" in k: found[k.rsplit(":job:", 1)[1]] = (k, port)               # clapper:{cN.K}:job:id
        cursor = int(cursor)
        if cursor == 0: return found


JWT_SECRET = "bench-jwt-secret-0123456789abcdef"


def jwt_hs256(secret, subject):
    b64 = lambda b: __import__("base64").urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": subject, "exp": int(time.time()) + 7200}).encode())
    signature = b64(hmac.new(secret.encode(), head + b"." + claims, hashlib.sha256).digest())
    return (head + b"." + claims + b"." + signature).decode()


def cluster_section(base_env):
    """Ingest and fan-out through a Clapper on a 3-master Redis Cluster and through one on a single
    redis-server, alternating runs (single, cluster, single, ...). Jobs are made through POST /v1/jobs
    (fal-sim, drop-webhook), by 64 users; each webhook names the job's fal request id."""
    nodes = []
    for i in range(3):
        port, bus = free_port(), free_port()
        d = os.path.join(TMP, f"cluster-{i}"); os.makedirs(d)
        start(f"cluster-{i}", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", d, "--loglevel", "warning", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                               "--cluster-port", str(bus)])
        wait_port(port); nodes.append(port)
    subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in nodes], "--cluster-replicas", "0", "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    end = time.monotonic() + 30
    while not all("cluster_state:ok" in Redis(p).call("CLUSTER", "INFO").decode() for p in nodes):
        if time.monotonic() > end: raise SystemExit("the bench cluster did not form")
        time.sleep(0.1)
    single = free_port()
    start("cluster-single", ["redis-server", "--port", str(single), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", TMP, "--dbfilename", "single.rdb", "--loglevel", "warning"])
    wait_port(single)
    variants = {"single": (f"redis://127.0.0.1:{single}", [single]),
                "cluster": ("redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in nodes), nodes)}
    gateways, pids = {}, {}
    for name, (url, _) in variants.items():
        port = free_port()
        env = dict(base_env, CLAPPER_HTTP_PORT=str(port), CLAPPER_PUBLIC_URL=f"http://127.0.0.1:{port}", CLAPPER_REDIS_URL=url,
                   CLAPPER_AUTH_JWT_SECRET=JWT_SECRET)
        pids[name] = start(f"clapper-{name}", [os.path.join(BIN, "clapper")], env=env).pid; wait_port(port)
        gateways[name] = port
    seen = {name: set() for name in variants}

    # Jobs of 64 users (a user's jobs share a shard on a cluster); the fan-out job is dev's (no token).
    tokens = [jwt_hs256(JWT_SECRET, f"bench-user-{u}") for u in range(64)]

    def make_jobs(name, n, users=True):
        port, redis_ports = gateways[name], variants[name][1]
        body = lambda i: json.dumps({"prompt": f"cluster bench {name} {i}", "durationSeconds": 2, "feature": {"audio": False}}).encode()
        auth = lambda i: f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n" if users else ""
        recs = [(f"c{i}", (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth(i)}"
                            f"Content-Length: {len(body(i))}\r\n\r\n").encode() + body(i)) for i in range(n)]
        tool("post", port=port, requests=write_records(os.path.join(TMP, "cjobs.req"), recs), concurrency=32)
        found = {}
        for rp in redis_ports: found.update(scan_jobs(rp))
        fresh = {j: v for j, v in found.items() if j not in seen[name]}
        seen[name].update(fresh)
        # fal-sim's request id for each video, once the submit's answer is stored (a follow-up).
        ids, end = {}, time.monotonic() + 60
        while len(ids) < len(fresh) and time.monotonic() < end:
            missing = [(j, key, node) for j, (key, node) in fresh.items() if j not in ids]
            for node in set(n for _, _, n in missing):
                mine = [(j, key) for j, key, n in missing if n == node]
                for (j, _), view in zip(mine, Redis(node).pipeline([["HGET", key, "view"] for _, key in mine])):
                    request = json.loads(view).get("videoRequestId") if view else None
                    if request: ids[j] = request
            if len(ids) < len(fresh): time.sleep(0.2)
        return {j: (key, node, ids.get(j)) for j, (key, node) in fresh.items()}

    n_hooks = 2000 if QUICK else 5000
    for run in range(RUNS):
        for name in variants:
            jobs = make_jobs(name, n_hooks)
            hooks = [(j, webhook_request(j, r, gateways[name])) for j, (_, _, r) in jobs.items() if r]
            path = write_records(os.path.join(TMP, "chooks.req"), hooks)
            # These jobs were made through this Clapper, so it may still have them cached (JobCache).
            record(f"cl_ingest_{name}", post_measured(pids[name], gateways[name], path, len(hooks)))
    log(f"cluster ingest: single {fmt(med('cl_ingest_single', 'rps'))}/s ({fmt(med('cl_ingest_single', 'clapper_cpu_us'))} µs of Clapper CPU each), "
        f"cluster {fmt(med('cl_ingest_cluster', 'rps'))}/s ({fmt(med('cl_ingest_cluster', 'clapper_cpu_us'))} µs)")
    counts = {p: Redis(p).call("DBSIZE") for p in nodes}
    record("cl_keys", {"per_master": counts})

    fans = {}
    for name in variants:
        job, (key, node, _) = next(iter(make_jobs(name, 1, users=False).items()))
        view = Redis(node).call("HGET", key, "view").decode()
        channel = key.replace(f":job:{job}", ":events") if ":job:" in key else "clapper:events"
        template = os.path.join(TMP, f"cfan-{name}.msg")
        open(template, "w").write('{"jobId":%s,"userId":"dev","id":"@ID@","job":{"bseq":@SEQ@,%s}' % (json.dumps(job), view[1:]))
        fans[name] = (job, node, channel, template)
    for n in (1000, 10000):
        events = (30 if n == 1000 else 10) if QUICK else (100 if n == 1000 else 30)
        for run in range(RUNS):
            for name, (job, node, channel, template) in fans.items():
                record(f"cl_fan_{name}{n}", tool("fanout", limit=120, port=gateways[name], path=f"/v1/jobs/{job}/events", n=n, events=events, window=4,
                                                 redis_port=node, channel=channel, message_template=template,
                                                 publish_command="SPUBLISH" if name == "cluster" else "PUBLISH"))
        log(f"cluster fan-out {n}: single {fmt(med(f'cl_fan_single{n}', 'events_per_s'))}/s, cluster {fmt(med(f'cl_fan_cluster{n}', 'events_per_s'))}/s")



def governor_section(base_env):
    """Jobs made through POST /v1/jobs and run to their end at a fal-sim that answers every webhook
    (50 ms a run, no concurrency cap), by a Clapper without the governor and one with
    CLAPPER_FAL_CONCURRENCY=1000 (more than are ever in flight: what the slot bookkeeping costs) and
    =16 (a cap that binds), alternating, each on a fresh Redis. Figures: creates/s (c=32) and jobs/s
    from the first create to the last job finished."""
    sim = free_port()
    start("governor-sim", [os.path.join(BIN, "fal-sim"), "--host", "127.0.0.1", "--port", str(sim), "--key", "sim-key:sim-secret",
                           "--user-id", FAL_USER, "--queue-delay-ms", "0", "--run-delay-ms", "50", "--concurrency", "100000"])
    wait_port(sim)
    variants = {"off": "0", "n1000": "1000", "n16": "16"}
    n = 500 if QUICK else 2000
    for run in range(RUNS):
        for name, limit in variants.items():
            rport, port = free_port(), free_port()
            d = os.path.join(TMP, f"gov-{name}-{run}"); os.makedirs(d)
            rproc = start(f"gov-redis-{name}-{run}", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                                      "--dir", d, "--loglevel", "warning"])
            wait_port(rport)
            env = dict(base_env, CLAPPER_HTTP_PORT=str(port), CLAPPER_PUBLIC_URL=f"http://127.0.0.1:{port}", CLAPPER_REDIS_URL=f"redis://127.0.0.1:{rport}",
                       FAL_QUEUE_URL=f"http://127.0.0.1:{sim}", FAL_JWKS_URL=f"http://127.0.0.1:{sim}/.well-known/jwks.json",
                       CLAPPER_FAL_CONCURRENCY=limit, CLAPPER_RECONCILE_INTERVAL_MS="1000", CLAPPER_GOVERNOR_INTERVAL_MS="200")
            gproc = start(f"gov-clapper-{name}-{run}", [os.path.join(BIN, "clapper")], env=env); wait_port(port)
            body = lambda i: json.dumps({"prompt": f"governor bench {name} {run} {i}", "durationSeconds": 2, "feature": {"audio": False}}).encode()
            recs = [(f"g{i}", (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                f"Content-Length: {len(body(i))}\r\n\r\n").encode() + body(i)) for i in range(n)]
            t0 = time.monotonic()
            created = tool("post", port=port, requests=write_records(os.path.join(TMP, "gjobs.req"), recs), concurrency=32)
            r, end, done = Redis(rport), time.monotonic() + 300, 0
            keys = list(scan_jobs(rport).values())
            while time.monotonic() < end:
                views = r.pipeline([["HGET", key, "view"] for key, _ in keys])
                done = sum(1 for v in views if v and json.loads(v)["status"] in ("completed", "failed", "canceled"))
                if done >= len(keys): break
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            record(f"gov_create_{name}", created)
            record(f"gov_jobs_{name}", {"rps": done / elapsed, "p50_ms": 0, "p99_ms": 0, "tool_cpu_percent": 0, "unfinished": len(keys) - done})
            for p in (gproc, rproc): p.terminate(); p.wait(timeout=30)
    log("governor: " + ", ".join(f"{name} {fmt(med(f'gov_jobs_{name}', 'rps'))} jobs/s" for name in variants))


def csv_rows(text):
    import csv, io
    for row in csv.reader(io.StringIO(text)):
        if row and row[0] != "test": yield row


def wrk_ms(text, label):
    m = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m: return -1
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]


def ratio(a, b):
    return f"{a[0] / b[0]:.2f}" if a and b and b[0] else "n/a"


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split(":", 1)[1].strip() for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
    swift = subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    return (f"nproc {os.cpu_count()}, {model}, MemTotal {mem}, kernel {os.uname().release}, "
            f"{swift[0] if swift else 'swift ?'}, redis {subprocess.run(['redis-server', '--version'], capture_output=True, text=True).stdout.split()[2]}, "
            f"nginx+nchan (Debian libnginx-mod-nchan)")


def report(idle_sizes, nofile, quiet_start, quiet_end, load_start, load_end):
    cpu = lambda name: fmt(med(name, "tool_cpu_percent"), "%")
    rows = []
    add = lambda *r: rows.append("| " + " | ".join(r) + " |")
    add("figure", "median (min–max, runs)", "p50 / p99 ms (median)", "vs baseline", "load-gen CPU (% of a core)")
    add("---", "---", "---", "---", "---")
    p = lambda name: f"{fmt(med(name, 'p50_ms'), '', 2)} / {fmt(med(name, 'p99_ms'), '', 2)}"
    add("1. redis EVALSHA JobScripts.apply (req/s)", fmt(med("evalsha", "rps")), p("evalsha"), "baseline: Redis ceiling", cpu("evalsha"))
    add("1. redis PUBLISH of a change (req/s)", fmt(med("publish", "rps")), p("publish"), "", cpu("publish"))
    add("1. wrk GET /healthz (req/s)", fmt(med("healthz", "rps")), p("healthz"), f"baseline: HTTP ceiling; Clapper CPU {fmt(med('healthz', 'clapper_cpu_us'))} µs a request", cpu("healthz"))
    add("2. signed webhooks, distinct (req/s, c=64)", fmt(med("ingest", "rps")), p("ingest"),
        f"{ratio(med('ingest', 'rps'), med('healthz', 'rps'))} × /healthz (target ≥ 0.40); {ratio(med('ingest', 'rps'), med('evalsha', 'rps'))} × EVALSHA; "
        f"Clapper CPU {fmt(med('ingest', 'clapper_cpu_us'))} µs a webhook", cpu("ingest"))
    add("2. signed webhooks, distinct, jobs this instance never saw (req/s, c=64)", fmt(med("ingest_cold", "rps")), p("ingest_cold"),
        f"{ratio(med('ingest_cold', 'rps'), med('healthz', 'rps'))} × /healthz; Clapper CPU {fmt(med('ingest_cold', 'clapper_cpu_us'))} µs a webhook (a read first)", cpu("ingest_cold"))
    add("2. signed webhooks, duplicates (req/s, c=64)", fmt(med("ingest_dup", "rps")), p("ingest_dup"),
        f"{ratio(med('ingest_dup', 'rps'), med('healthz', 'rps'))} × /healthz; Clapper CPU {fmt(med('ingest_dup', 'clapper_cpu_us'))} µs a webhook", cpu("ingest_dup"))
    for s in (1000, 10000):
        name = f"sse{s}"
        add(f"3. webhook -> SSE, {SSE_RATE:,} webhooks/s, {s:,} streams: p50 / p99 / max ms",
            f"{fmt(med(name, 'p50_ms'), '', 2)} / {fmt(med(name, 'p99_ms'), '', 2)} / {fmt(med(name, 'max_ms'), '', 2)}",
            f"missing {fmt(med(name, 'missing'))}", f"p99 {med(name, 'p99_ms')[0] / 2:.2f} × 2 ms target" if med(name, "p99_ms") else "", cpu(name))
    x = "sse_nchan10000"
    add(f"3. nchan publish -> subscriber, {SSE_RATE:,} publishes/s, 10,000 channels × 1 subscriber: p50 / p99 / max ms",
        f"{fmt(med(x, 'p50_ms'), '', 2)} / {fmt(med(x, 'p99_ms'), '', 2)} / {fmt(med(x, 'max_ms'), '', 2)}",
        f"missing {fmt(med(x, 'missing'))}",
        f"Clapper's p99 at 10,000 streams = {med('sse10000', 'p99_ms')[0] / med(x, 'p99_ms')[0]:.2f} × nchan's (target ≤ 1)" if med(x, "p99_ms") and med("sse10000", "p99_ms") else "", cpu(x))
    served = lambda name: (f"server CPU {fmt(med(name, 'server_cpu_us'), '', 2)} µs and "
                           f"{fmt(med(name, 'server_writes'), '', 2)} write syscalls a delivered event")
    for n in (1000, 10000):
        c, x = f"fan_clapper{n}", f"fan_nchan{n}"
        add(f"4. fan-out, 1 job, {n:,} subscribers: Clapper (events/s)", fmt(med(c, "events_per_s")), p(c),
            f"{ratio(med(c, 'events_per_s'), med(x, 'events_per_s'))} × nchan (target ≥ 1); {served(c)}", cpu(c))
        add(f"4. fan-out, 1 channel, {n:,} subscribers: nchan+Redis (events/s)", fmt(med(x, "events_per_s")), p(x), f"baseline; {served(x)}", cpu(x))
    for s in idle_sizes:
        c, x = f"idle_clapper{s}", f"idle_nchan{s}"
        add(f"5. idle SSE streams, {s:,}: Clapper (KB RSS / stream)", fmt(med(c, "kb_per_stream"), "", 1), "", f"{ratio(med(c, 'kb_per_stream'), med(x, 'kb_per_stream'))} × nchan (target < 5 KB)", "")
        add(f"5. idle SSE streams, {s:,}: nchan (KB RSS / stream, all nginx processes)", fmt(med(x, "kb_per_stream"), "", 1), "", "baseline", "")
    add("6. POST /v1/jobs, fal-sim zero delays (jobs/s, c=32)", fmt(med("jobs", "rps")), p("jobs"),
        f"{ratio(med('jobs', 'rps'), med('healthz', 'rps'))} × /healthz", cpu("jobs"))
    if results.get("cl_ingest_single"):
        add("7. Redis Cluster: signed webhooks, distinct (req/s, c=64): 1 node", fmt(med("cl_ingest_single", "rps")), p("cl_ingest_single"),
            f"baseline; Clapper CPU {fmt(med('cl_ingest_single', 'clapper_cpu_us'))} µs a webhook", cpu("cl_ingest_single"))
        add("7. Redis Cluster: signed webhooks, distinct (req/s, c=64): 3 masters", fmt(med("cl_ingest_cluster", "rps")), p("cl_ingest_cluster"),
            f"{ratio(med('cl_ingest_cluster', 'rps'), med('cl_ingest_single', 'rps'))} × 1 node; Clapper CPU {fmt(med('cl_ingest_cluster', 'clapper_cpu_us'))} µs a webhook", cpu("cl_ingest_cluster"))
        for n in (1000, 10000):
            add(f"7. Redis Cluster: fan-out, 1 job, {n:,} subscribers (events/s): 1 node", fmt(med(f"cl_fan_single{n}", "events_per_s")), p(f"cl_fan_single{n}"), "baseline", cpu(f"cl_fan_single{n}"))
            add(f"7. Redis Cluster: fan-out, 1 job, {n:,} subscribers (events/s): 3 masters", fmt(med(f"cl_fan_cluster{n}", "events_per_s")), p(f"cl_fan_cluster{n}"),
                f"{ratio(med(f'cl_fan_cluster{n}', 'events_per_s'), med(f'cl_fan_single{n}', 'events_per_s'))} × 1 node", cpu(f"cl_fan_cluster{n}"))
        keys = results.get("cl_keys", [{}])[-1].get("per_master", {})
        add("7. Redis Cluster: keys per master after section 7", ", ".join(str(v) for v in keys.values()), "", "", "")
    if results.get("gov_jobs_off"):
        for name, what in (("off", "no governor"), ("n1000", "CLAPPER_FAL_CONCURRENCY=1000 (never binds)"), ("n16", "CLAPPER_FAL_CONCURRENCY=16 (binds)")):
            add(f"8. fal governor: POST /v1/jobs (creates/s, c=32), {what}", fmt(med(f"gov_create_{name}", "rps")), p(f"gov_create_{name}"),
                "baseline" if name == "off" else f"{ratio(med(f'gov_create_{name}', 'rps'), med('gov_create_off', 'rps'))} × no governor", cpu(f"gov_create_{name}"))
            add(f"8. fal governor: jobs created and finished at fal-sim (jobs/s, 50 ms a run), {what}", fmt(med(f"gov_jobs_{name}", "rps")), "",
                "baseline" if name == "off" else f"{ratio(med(f'gov_jobs_{name}', 'rps'), med('gov_jobs_off', 'rps'))} × no governor; unfinished {fmt(med(f'gov_jobs_{name}', 'unfinished'))}", "")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    notes = [
        f"# ops/bench{' --quick' if QUICK else ''}{' (CLAPPER_BENCH_ONLY=' + ','.join(sorted(ONLY)) + ')' if ONLY else ''} — {stamp}", "",
        f"Machine: {machine()}.",
        f"Quiet: swift-build/swift-test processes at start {quiet_start}, at end {quiet_end}; load average at start {' '.join(load_start)}, at end {' '.join(load_end)}.",
        "Everything on 127.0.0.1 on the same 2 cores: redis-server (no persistence), fal-sim (zero delays, drop-webhook), "
        "Clapper release build (CLAPPER_DEV_MODE=1, no per-user stream cap, CLAPPER_LOG_LEVEL=warning, reconciler off, webhook verification ON against a JWKS "
        "ops/bench serves: webhooks are Ed25519-signed by ops/bench before each run), nginx + nchan (2 workers, `nchan_redis_url` storage).",
        "Jobs for sections 2–5 are written with JobScripts.apply itself (EVALSHA of the script read from the Swift source), cloned from a job made through POST /v1/jobs; "
        "for sections 2 and 3 each clone is published on Clapper's events channel with its doc, as the create path does, so Clapper has it "
        "cached (section 2 also runs on jobs published elsewhere: jobs the instance never saw).",
        "Section 7: two more Clapper processes, one on a fresh redis-server and one on a fresh 3-master Redis Cluster (no replicas), jobs made through POST /v1/jobs by 64 users (fal-sim, webhooks dropped), then their webhooks; runs alternate 1 node / 3 masters. All on the same 2 cores, so 3 masters cannot add CPU here: the column shows what cluster routing costs, not what more machines would give.",
        f"Each figure: median of {RUNS} runs (min–max). Latency p50/p99 are medians of the per-run percentiles. Load-generator CPU is % of one core (redis-benchmark, wrk, clapper-bench).",
        f"Clapper's RSS after sections 1–4 (before the idle section restarts it): {rss_after_fanout / 1024:.0f} MiB.",
        f"Idle streams at 50,000 are not measurable here: the hard RLIMIT_NOFILE is {nofile} and cannot be raised in this sandbox." if 50000 > nofile else "",
        "", *rows, "",
    ]
    text = "\n".join(notes)
    print(text)
    only = f"-only-{'-'.join(sorted(ONLY))}" if ONLY else ""
    path = os.path.join(ROOT, "bench", "results", f"{stamp}{'-quick' if QUICK else ''}{only}.md")
    # Short runs can end in the same minute: a second one gets -2, -3, … rather than overwriting.
    base, n = path[:-3], 2
    while os.path.exists(path):
        path, n = f"{base}-{n}.md", n + 1
    open(path, "w").write(text)
    json.dump(results, open(path[:-3] + ".json", "w"), indent=1)
    log(f"written to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(SystemExit("ops/bench: time limit reached")))
    signal.alarm(int(deadline - time.monotonic()))
    try:
        main()
    finally:
        stop_all()
