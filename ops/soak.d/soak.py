#!/usr/bin/env python3
"""ops/soak's driver (issue 12): steady mixed load on Clapper for M minutes, resources sampled each
minute, a table and a plot written to bench/results/soak-<date>.{md,png}, and a verdict on whether
each series is flat after the warm-up.

The stack is ops/chaos's (ops/chaos.d/harness.py): one redis-server (AOF on, everysec), fal-sim
with a mild seeded fault plan (some failed models, dropped, repeated and delayed webhooks, refused
submits, failing status calls: the error paths run too), and K Clapper instances (default 2).

Load, steady: `--rate` jobs a second (with and without audio, both tiers), created on random
instances; half are followed on their event stream (cut at random and resumed with Last-Event-ID),
some users hold a `/v1/events` stream for 5 to 30 s; finished jobs are read back once.

Retention: Clapper keeps a finished job CLAPPER_JOB_RETENTION_DAYS (at least one day) and then its
keys expire. A 30-minute run never reaches that, so Redis would grow by every job it made, by
design. The driver stands in for the expiry: a job finished more than `--retain` seconds ago has its
two keys deleted and leaves its user's list (what EXPIRE and the user-list trim do at retention).
What is left growing after that is something nothing ever removes.

Sampled each minute: RSS (VmRSS) and open descriptors (/proc/PID/fd) of every Clapper process,
Redis used_memory, DBSIZE and keys per kind (SCAN), the due set and the request index sizes, and
the load's own counts (jobs, streams open, requests without an answer).

Flat: after the warm-up, the rise a least-squares line fits over the window is at most
max(3 x the residuals' standard deviation, 5 % of the mean), for each series.
"""
import argparse, asyncio, collections, datetime, json, os, random, re, secrets, shutil, socket, statistics, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos.d"))
from harness import (FAST_MODEL, NO_ANSWER, SYNCED_MODEL, VIDEO_MODEL, Instance, RedisProc, Stack, clapper_env, free_port,
                     request, _open, _body_chunks)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ap = argparse.ArgumentParser(prog="ops/soak")
ap.add_argument("--bin", required=True)
ap.add_argument("--minutes", type=float, default=30)
ap.add_argument("--rate", type=float, default=3.0, help="jobs created per second (default 3)")
ap.add_argument("--instances", type=int, default=2)
ap.add_argument("--warmup", type=float, default=None, help="minutes left out of the verdict (default: a sixth, at least 2)")
ap.add_argument("--retain", type=float, default=120, help="seconds a finished job is kept before the driver expires it (default 120)")
ap.add_argument("--sample-seconds", type=float, default=60)
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
args = ap.parse_args()
SEED = args.seed if args.seed is not None else secrets.randbelow(10**9)
RNG = random.Random(SEED)
TMP = tempfile.mkdtemp(prefix="clapper-soak.")
T0 = time.monotonic()
STACK = Stack(TMP, T0)
log = STACK.log
JWT_SECRET = "soak-jwt-secret-" + secrets.token_hex(16)
FAL_USER = "soak-fal-user"
USERS = [f"soak-user-{i}" for i in range(30)]
counts = collections.Counter()
streams_open = 0
finished = {}   # jobId -> (user, finished at)
thread_names = {}   # instance -> [(minute, Counter of thread names)]
MILD_PLAN = ["fail=0.08", "infra-error=0.03", "refuse=0.03", "submit-503=0", "after-create=0.02", "submit-stall=0",
             "drop=0.05", "duplicate=0.08", "repeat=0.05", "delay=0.05", "status-500=0.05", "result-500=0"]


def token(user):
    return Stack.user_token(JWT_SECRET, user)


# MARK: - a tiny RESP client for the samples

class Redis:
    def __init__(self, port):
        self.port = port
        self.sock = None

    def call(self, *parts):
        for attempt in range(2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    self.f = self.sock.makefile("rb")
                out = b"".join([b"*%d\r\n" % len(parts)] + [b"$%d\r\n%s\r\n" % (len(p), p) for p in (x if isinstance(x, bytes) else str(x).encode() for x in parts)])
                self.sock.sendall(out)
                return self.read()
            except OSError:
                self.sock = None
                if attempt: raise

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+": return rest.decode()
        if kind == b"-": raise RuntimeError(rest.decode())
        if kind == b":": return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"bad reply {line!r}")


def key_kind(key):
    k = key.decode("utf-8", "replace")
    if re.match(r"clapper:\{[^}]*\}:job$", k): return "job hashes"
    if re.match(r"clapper:\{[^}]*\}:events$", k): return "event streams"
    if k.startswith("clapper:user:"): return "user lists"
    if k.startswith("clapper:idem:"): return "idempotency keys"
    if k in ("clapper:due", "clapper:requests"): return "indexes"
    return "other"


def sample(redis, instances, minute):
    row = {"minute": round(minute, 2)}
    for inst in instances:
        pid = inst.proc.pid
        try:
            status = open(f"/proc/{pid}/status").read()
            row[f"rss{inst.index}_mb"] = round(int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024, 1)
            row[f"fds{inst.index}"] = len(os.listdir(f"/proc/{pid}/fd"))
            row[f"threads{inst.index}"] = int(re.search(r"Threads:\s+(\d+)", status).group(1))
            thread_names.setdefault(inst.index, []).append((row["minute"], collections.Counter(
                open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{pid}/task"))))
        except (OSError, AttributeError):
            row[f"rss{inst.index}_mb"] = row[f"fds{inst.index}"] = row[f"threads{inst.index}"] = None
    info = redis.call("INFO", "memory").decode()
    row["redis_used_mb"] = round(int(re.search(r"used_memory:(\d+)", info).group(1)) / 2**20, 2)
    row["dbsize"] = redis.call("DBSIZE")
    kinds = collections.Counter()
    cursor = b"0"
    while True:
        cursor, keys = redis.call("SCAN", cursor, "COUNT", 1000)
        for k in keys: kinds[key_kind(k)] += 1
        if cursor == b"0": break
    for name in ("job hashes", "event streams", "user lists", "idempotency keys", "other"):
        row[name] = kinds[name]
    row["due"] = redis.call("ZCARD", "clapper:due")
    row["requests"] = redis.call("HLEN", "clapper:requests")
    row["jobs created"] = counts["jobs created"]
    row["streams open"] = streams_open
    row["no answer"] = counts["no answer"]
    return row


# MARK: - load

def live(instances):
    return [i for i in instances if i.up]


async def follow(job_id, user, instances, limit):
    """Reads a job's events until done, cut at random and resumed with Last-Event-ID."""
    global streams_open
    last_id = None
    end = time.monotonic() + limit
    while time.monotonic() < end:
        inst = RNG.choice(instances)
        headers = {"Authorization": "Bearer " + token(user), "Accept": "text/event-stream"}
        if last_id: headers["Last-Event-ID"] = last_id
        try:
            status, head, reader, writer = await _open(inst.port, "GET", f"/v1/jobs/{job_id}/events", headers, None, 5)
        except NO_ANSWER:
            counts["no answer"] += 1
            await asyncio.sleep(0.5); continue
        streams_open += 1
        counts["streams opened"] += 1
        done = False
        try:
            if status != 200:
                counts[f"stream {status}"] += 1
                await asyncio.sleep(1); continue
            cut = time.monotonic() + RNG.uniform(0.5, 5)
            buf = b""
            chunks = _body_chunks(reader, head)
            while not done:
                left = cut - time.monotonic()
                if left <= 0: break
                try:
                    chunk = await asyncio.wait_for(chunks.__anext__(), left)
                except (StopAsyncIteration, asyncio.TimeoutError):
                    break
                buf += chunk
                for line in buf.split(b"\n")[:-1]:
                    if line.startswith(b"id:"): last_id = line[3:].strip().decode()
                    if line.startswith(b"event: done"): done = True
                buf = buf.rsplit(b"\n", 1)[-1]
        except NO_ANSWER:
            pass
        finally:
            streams_open -= 1
            writer.close()
        if done: return True
    return False


async def user_stream(instances):
    global streams_open
    user = RNG.choice(USERS)
    inst = RNG.choice(instances)
    try:
        status, head, reader, writer = await _open(inst.port, "GET", "/v1/events", {"Authorization": "Bearer " + token(user), "Accept": "text/event-stream"}, None, 5)
    except NO_ANSWER:
        counts["no answer"] += 1; return
    streams_open += 1
    counts["user streams opened"] += 1
    try:
        chunks = _body_chunks(reader, head)
        end = time.monotonic() + RNG.uniform(5, 30)
        while time.monotonic() < end:
            try:
                await asyncio.wait_for(chunks.__anext__(), end - time.monotonic())
            except (StopAsyncIteration, asyncio.TimeoutError):
                break
    except NO_ANSWER:
        pass
    finally:
        streams_open -= 1
        writer.close()


async def one_job(index, instances):
    r = random.Random(f"{SEED}:{index}")
    user = USERS[index % len(USERS)]
    kind = r.random()
    body = {"prompt": f"soak job {index} of run {SEED}", "durationSeconds": r.randint(1, 4), "feature": {"audio": kind >= 0.3}}
    if kind >= 0.3:
        body["feature"]["audioTier"] = "synced" if kind >= 0.75 else "fast"
        if kind < 0.5: body["audioMode"] = "after-video"
    inst = RNG.choice(instances)
    try:
        status, _, out = await request(inst.port, "POST", "/v1/jobs", {"Authorization": "Bearer " + token(user), "Content-Type": "application/json"},
                                       json.dumps(body).encode(), timeout=10)
    except NO_ANSWER:
        counts["no answer"] += 1; return
    if status != 202:
        counts[f"create {status}"] += 1; return
    counts["jobs created"] += 1
    job_id = json.loads(out)["jobId"]
    if r.random() < 0.5:
        await follow(job_id, user, instances, 120)
    # Read it back until final (at most 2 minutes), then it is the retention's.
    end = time.monotonic() + 120
    while time.monotonic() < end:
        await asyncio.sleep(2)
        try:
            status, _, out = await request(RNG.choice(instances).port, "GET", f"/v1/jobs/{job_id}", {"Authorization": "Bearer " + token(user)}, timeout=10)
        except NO_ANSWER:
            counts["no answer"] += 1; continue
        if status == 200 and json.loads(out)["status"] in ("completed", "failed", "canceled"):
            counts["jobs final"] += 1
            finished[job_id] = (user, time.monotonic())
            return
    counts["jobs not final after 2 min"] += 1


def expire(redis):
    """What retention does to a finished job, `--retain` seconds after it finished."""
    now = time.monotonic()
    old = [(j, u) for j, (u, at) in finished.items() if now - at > args.retain]
    for job_id, user in old:
        redis.call("DEL", f"clapper:{{{job_id}}}:job", f"clapper:{{{job_id}}}:events")
        redis.call("ZREM", f"clapper:user:{{{user}}}:jobs", job_id)
        del finished[job_id]
        counts["jobs expired by the driver"] += 1


async def main_async():
    redis_port, sim_port = free_port(), free_port()
    redis = RedisProc(STACK, redis_port)
    redis.start()
    STACK.start("fal-sim", [os.path.join(args.bin, "fal-sim"), "--host", "127.0.0.1", "--port", str(sim_port), "--key", "sim-key:sim-secret",
                            "--user-id", FAL_USER, "--queue-delay-ms", "50", "--run-delay-ms", "300", "--webhook-retry-scale", "0.02",
                            "--chaos-seed", str(SEED), *[a for rate in MILD_PLAN for a in ("--chaos-rate", rate)]])
    redis.wait_port()
    binary = os.path.join(args.bin, "clapper")
    instances = [Instance(STACK, binary, i, clapper_env(free_port(), redis_port, sim_port, fal_user=FAL_USER,
                                                          webhook_secret="soak-webhook-secret-" + secrets.token_hex(8),
                                                          jwt_secret=JWT_SECRET, admin_token="soak-admin-" + secrets.token_hex(16),
                                                          timeout_seconds=20, log_level="notice"))
                 for i in range(args.instances)]
    # One webhook secret for all, as instances sharing Redis need.
    for inst in instances[1:]: inst.env["CLAPPER_WEBHOOK_SECRET"] = instances[0].env["CLAPPER_WEBHOOK_SECRET"]
    for inst in instances: inst.start()
    for inst in instances: await inst.wait_ready()
    rc = Redis(redis_port)
    log(f"seed {SEED}: {args.instances} instances, {args.rate} jobs/s for {args.minutes} min; logs in {TMP}")
    rows = [sample(rc, instances, 0.0)]
    tasks = set()
    end = T0 + args.minutes * 60
    next_sample = time.monotonic() + args.sample_seconds
    index = 0
    interval = 1.0 / args.rate
    next_job = time.monotonic()
    next_user_stream = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_job:
            t = asyncio.create_task(one_job(index, instances)); tasks.add(t); t.add_done_callback(tasks.discard)
            index += 1
            next_job += interval
        if now >= next_user_stream:
            t = asyncio.create_task(user_stream(instances)); tasks.add(t); t.add_done_callback(tasks.discard)
            next_user_stream += 2.0
        if now >= next_sample:
            expire(rc)
            rows.append(sample(rc, instances, (now - T0) / 60))
            r = rows[-1]
            log(f"minute {r['minute']:.1f}: rss {[r.get(f'rss{i.index}_mb') for i in instances]} MB, fds {[r.get(f'fds{i.index}') for i in instances]}, "
                f"redis {r['redis_used_mb']} MB, {r['dbsize']} keys, {r['streams open']} streams open, {counts['jobs created']} jobs")
            next_sample += args.sample_seconds
        await asyncio.sleep(min(0.05, max(0.0, min(next_job, next_sample) - time.monotonic())))
    for t in list(tasks): t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    alive = all(i.up for i in instances)
    return rows, alive, instances


def fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0
    resid = [y - (my + slope * (x - mx)) for x, y in zip(xs, ys)]
    return slope, my, statistics.pstdev(resid) if n > 1 else 0.0


def verdicts(rows, series):
    warm = args.warmup if args.warmup is not None else max(2.0, args.minutes / 6)
    window = [r for r in rows if r["minute"] >= warm]
    out = []
    for name in series:
        pts = [(r["minute"], r[name]) for r in window if r.get(name) is not None]
        if len(pts) < 3:
            out.append((name, None, None, None, "too few samples")); continue
        xs, ys = zip(*pts)
        slope, mean, noise = fit(xs, ys)
        rise = slope * (xs[-1] - xs[0])
        limit = max(3 * noise, 0.05 * abs(mean))
        out.append((name, slope, rise, limit, "flat" if rise <= limit else "RISING"))
    return warm, out


def write(rows, instances, alive):
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    os.makedirs(args.out, exist_ok=True)
    md, png = os.path.join(args.out, f"soak-{stamp}.md"), os.path.join(args.out, f"soak-{stamp}.png")
    per = [f"rss{i.index}_mb" for i in instances] + [f"fds{i.index}" for i in instances] + [f"threads{i.index}" for i in instances]
    series = per + ["redis_used_mb", "dbsize", "job hashes", "event streams", "user lists", "idempotency keys", "due", "requests"]
    warm, judged = verdicts(rows, [s for s in series if not s.startswith("threads")] + [s for s in series if s.startswith("threads")])
    cols = ["minute"] + series + ["jobs created", "streams open", "no answer"]
    lines = [f"# Soak {stamp}", "",
             f"`ops/soak --minutes {args.minutes:g} --rate {args.rate:g}` (seed {SEED}): {args.instances} Clapper instances "
             f"({os.path.basename(os.path.dirname(args.bin.rstrip('/')))}/{os.path.basename(args.bin.rstrip('/'))} binaries), one Redis (AOF everysec), fal-sim with a mild fault plan "
             f"({', '.join(MILD_PLAN)}). Steady load: {args.rate:g} jobs/s (30 % without audio, both tiers, both modes), half followed on "
             f"their event stream (cut at random, resumed with Last-Event-ID), a `/v1/events` stream opened every 2 s for 5-30 s; "
             f"finished jobs expired by the driver {args.retain:g} s after they finished (standing in for CLAPPER_JOB_RETENTION_DAYS). "
             f"Machine: {os.cpu_count()} cores.", "",
             f"Totals: {counts['jobs created']} jobs created, {counts['jobs final']} read back final, "
             f"{counts['jobs not final after 2 min']} not final within 2 minutes, {counts['streams opened']} job streams and "
             f"{counts['user streams opened']} user streams opened, {counts['no answer']} requests without an answer; every instance alive at the end: {'yes' if alive else 'NO'}.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    lines += ["", f"Verdict after a {warm:g}-minute warm-up (flat: the fitted rise over the window is at most max(3 sigma of the residuals, 5 % of the mean)):", "",
              "| series | slope per minute | rise over the window | limit | verdict |", "|---|---|---|---|---|"]
    for name, slope, rise, limit, verdict in judged:
        lines.append(f"| {name} | {'' if slope is None else f'{slope:.3g}'} | {'' if rise is None else f'{rise:.3g}'} | {'' if limit is None else f'{limit:.3g}'} | {verdict} |")
    lines += ["", "Threads by name (`/proc/PID/task/*/comm`), first sample, and each sample where they changed:", ""]
    for index, samples in sorted(thread_names.items()):
        last = None
        for minute, names in samples:
            if names != last:
                lines.append(f"- clapper-{index}, minute {minute:g}: " + ", ".join(f"{n} x{c}" for n, c in sorted(names.items())))
                last = names
    lines += ["", f"![plot]({os.path.basename(png)})", ""]
    with open(md, "w") as fh: fh.write("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2, 2, figsize=(12, 8))
        xs = [r["minute"] for r in rows]
        for i in instances:
            axes[0][0].plot(xs, [r.get(f"rss{i.index}_mb") for r in rows], marker=".", label=f"clapper-{i.index}")
            axes[0][1].plot(xs, [r.get(f"fds{i.index}") for r in rows], marker=".", label=f"clapper-{i.index}")
        axes[0][0].set_title("Clapper RSS (MB)"); axes[0][1].set_title("Clapper open descriptors")
        axes[1][0].plot(xs, [r["redis_used_mb"] for r in rows], marker=".", color="tab:red"); axes[1][0].set_title("Redis used_memory (MB)")
        for name in ("dbsize", "job hashes", "event streams", "user lists", "due", "requests"):
            axes[1][1].plot(xs, [r[name] for r in rows], marker=".", label=name)
        axes[1][1].set_title("Redis keys (and index sizes)")
        for ax in (axes[0][0], axes[0][1], axes[1][1]): ax.legend(fontsize=8)
        for row in axes:
            for ax in row:
                ax.axvspan(0, warm, color="0.9"); ax.set_xlabel("minute"); ax.set_ylim(bottom=0)
        fig.suptitle(f"ops/soak {stamp}: {args.rate:g} jobs/s, {args.instances} instances (grey: warm-up)")
        fig.tight_layout(); fig.savefig(png, dpi=90)
    except ImportError:
        print("matplotlib is missing: no plot", file=sys.stderr)
    return md, png, judged


def main():
    rows, alive, instances = [], False, []
    try:
        rows, alive, instances = asyncio.run(main_async())
    finally:
        STACK.stop_all()
    md, png, judged = write(rows, instances, alive)
    print(open(md).read())
    rising = [j[0] for j in judged if j[4] == "RISING"]
    verdict = "FLAT" if not rising and alive else ("RISING: " + ", ".join(rising) if rising else "an instance died")
    print(f"ops/soak verdict: {verdict}; table {md}, plot {png}; logs {TMP}")
    sys.exit(0 if verdict == "FLAT" else 1)


if __name__ == "__main__":
    main()
