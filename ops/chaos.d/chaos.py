#!/usr/bin/env python3
"""ops/chaos's driver (issue 12): Clapper's promises under every fault at once, checked against
fal-sim's ground truth.

Starts one redis-server (AOF on, `appendfsync everysec`: the production default; the restart here
is a SIGTERM, on which Redis fsyncs the AOF, so everysec loses nothing; a crash could lose up to a
second, which is not what this run tests), fal-sim with a seeded fault plan (`--chaos-seed`), and
K >= 3 Clapper instances sharing that Redis, each with its own port and CLAPPER_PUBLIC_URL (fal-sim
calls back the instance that submitted; while that one is down its webhooks fail and fal retries
on the scaled schedule). Jobs (with and without audio, both tiers, both audio modes) are created
on random instances with an Idempotency-Key (a lost answer is asked again elsewhere, same job).
Followers read job event streams on random instances, are cut at random and resume with
Last-Event-ID, sometimes on another instance. Meanwhile one instance is SIGKILLed and restarted
and Redis is restarted (SIGTERM, same data dir, AOF reload) with work in flight. The run stops by
itself: after the load phase it waits for every job to be final (bounded), then checks.

Every job's prompt is "chaos job <index> of run <seed>", and fal-sim draws each request's faults
from hash(seed, model, prompt) and how many submits of it came before: `--seed S` replays a run's
plan exactly (timing aside).

The oracle, per task (fal-sim's records of the task's model and prompt; "accepted" = a record
fal-sim did not reject, i.e. a job exists there: submit answered 200, or `submit-500-after-create`
and `submit-stall`, whose answer was lost):
- more than one accepted record: a double submission;
- one accepted record R: if Clapper shows R's request id, or one of R's webhook deliveries was
  answered 2xx, the task must match R's outcome: ok -> `completed` with the media URL in R's
  output; error -> `failed`; canceled -> `canceled`/`failed`/`timed_out`. Otherwise (the answer
  was lost and no webhook got through) nobody could know R: the task must be `failed`
  `submit_outcome_unknown` (the README's rule for unknown outcomes);
- no accepted record: the task must not be `completed`: `failed` (`submit_failed` or
  `submit_outcome_unknown`: a refusal, a 503 before fal recorded it, a submit lost with an
  instance), or, for an after-video audio whose video did not complete, `canceled` `video_failed`.
The job's status must be final and derived as README says: `failed` when the video failed or timed
out, `canceled` when it was canceled, `completed` when the video completed and the audio (if any)
is terminal, whatever became of it.

SSE (per follower, across its connections): a `snapshot` may jump (it says so), otherwise each `job`
event's version is the previous one + 1; the stream ends with `done`, whose status is the last
view's, and that last view equals `GET /v1/jobs/{id}` at the end (eventsUrl aside).

A violation prints the job, its fal-sim records, the events its follower saw, the seed and the
directory holding every process's log, and the run exits 1.
"""
import argparse, asyncio, collections, json, os, random, re, secrets, shutil
import signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (FAST_MODEL, NO_ANSWER, SYNCED_MODEL, VIDEO_MODEL, Instance, RedisProc, Stack, clapper_env, free_port,
                     request, _open, _body_chunks)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ap = argparse.ArgumentParser(prog="ops/chaos")
ap.add_argument("--bin", required=True, help="directory holding clapper and fal-sim")
ap.add_argument("--jobs", type=int, default=300, help="jobs to create (default 300)")
ap.add_argument("--minutes", type=float, default=1.5, help="length of the load phase (default 1.5)")
ap.add_argument("--seed", type=int, default=None, help="fault plan and load seed (default: random, printed)")
ap.add_argument("--instances", type=int, default=3, help="Clapper instances (at least 3)")
ap.add_argument("--follow", type=float, default=0.6, help="share of jobs with an event-stream follower")
ap.add_argument("--timeout-seconds", type=int, default=20, help="every model's timeoutSeconds (the unknown-outcome deadline)")
ap.add_argument("--rate", action="append", default=[], metavar="NAME=X", help="change one rate of fal-sim's plan (fal-sim --chaos-rate)")
ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) even when the run passes")
ap.add_argument("--json", default=None, help="also write the figures to this file")
args = ap.parse_args()
if args.instances < 3:
    raise SystemExit("ops/chaos: --instances must be at least 3")
SEED = args.seed if args.seed is not None else secrets.randbelow(10**9)
RNG = random.Random(SEED)
TMP = tempfile.mkdtemp(prefix="clapper-chaos.")
JWT_SECRET = "chaos-jwt-secret-" + secrets.token_hex(16)
WEBHOOK_SECRET = "chaos-webhook-secret-" + secrets.token_hex(16)
ADMIN_TOKEN = "chaos-admin-token-" + secrets.token_hex(16)
FAL_USER = "chaos-fal-user"
AUDIO_SUFFIX = " ambient sounds"
MERGE_MODEL = "fal-ai/ffmpeg-api/merge-audio-video"
MEDIA_PATH = {VIDEO_MODEL: "video.url", FAST_MODEL: "audio_file.url", SYNCED_MODEL: "video.url", MERGE_MODEL: "video.url"}
T0 = time.monotonic()


STACK = Stack(TMP, T0)
log, start = STACK.log, STACK.start


def user_token(sub):
    return STACK.user_token(JWT_SECRET, sub)


# MARK: - state and figures

figures = collections.Counter()
violations = []
jobs = {}        # index -> dict(index, id, user, prompt, audio, tier, mode, instance, created)
followers = {}   # jobId -> Follower


def violation(kind, job, detail):
    violations.append((kind, job, detail))
    print(f"VIOLATION {kind}: job {job and job.get('id')} (index {job and job.get('index')}, seed {SEED}): {detail}", file=sys.stderr, flush=True)


def job_spec(index):
    r = random.Random(f"{SEED}:{index}")
    kind = r.random()
    spec = {"index": index, "prompt": f"chaos job {index} of run {SEED}", "duration": r.randint(1, 4),
            "user": f"chaos-user-{index % 40}"}
    if kind < 0.3:
        spec.update(audio=False, tier=None, mode=None)
    elif kind < 0.55:
        spec.update(audio=True, tier="fast", mode="parallel")
    elif kind < 0.7:
        spec.update(audio=True, tier="fast", mode="after-video")
    else:
        spec.update(audio=True, tier="synced", mode="after-video")
    return spec


def live(instances):
    return [i for i in instances if i.up and not getattr(i, "hung", False)]


def all_hung(instances):
    return all(getattr(i, "hung", False) for i in instances)


def dump_stacks(inst):
    """A hung process's thread stacks (gdb), for the report; returns the file."""
    where = os.path.join(TMP, f"clapper-{inst.index}.stacks")
    if shutil.which("gdb"):
        with open(where, "w") as fh:
            try:
                subprocess.run(["gdb", "-p", str(inst.proc.pid), "-batch", "-ex", "thread apply all bt"], stdout=fh, stderr=subprocess.STDOUT, timeout=120)
            except subprocess.TimeoutExpired:
                pass
    return where


async def watch(instances, stop):
    """Flags an instance whose process runs but has not answered /readyz for 10 s (and is not
    being restarted): a hang. Its stacks are saved; the run goes on without it."""
    silent = {}
    while not stop.is_set():
        for inst in instances:
            if not inst.up or getattr(inst, "hung", False) or getattr(inst, "restarting", False):
                silent.pop(inst.index, None); continue
            try:
                status = (await request(inst.port, "GET", "/readyz", timeout=2))[0]
            except NO_ANSWER:
                status = None
            if status is None:
                silent.setdefault(inst.index, time.monotonic())
                if time.monotonic() - silent[inst.index] > 10:
                    inst.hung = True
                    where = await asyncio.get_running_loop().run_in_executor(None, dump_stacks, inst)
                    figures["instances hung"] += 1
                    violation("instance hung", None, f"clapper-{inst.index} (pid {inst.proc.pid}) runs but has not answered for 10 s; "
                              f"thread stacks in {where}; log {TMP}/clapper-{inst.index}.log")
            else:
                silent.pop(inst.index, None)
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


async def create_job(spec, instances):
    body = {"prompt": spec["prompt"], "durationSeconds": spec["duration"], "feature": {"audio": spec["audio"]}}
    if spec["audio"]:
        body["feature"]["audioTier"] = spec["tier"]
        body["audioMode"] = spec["mode"]
    data = json.dumps(body).encode()
    headers = {"Authorization": "Bearer " + user_token(spec["user"]), "Content-Type": "application/json",
               "Idempotency-Key": f"chaos-{SEED}-{spec['index']}"}
    end = time.monotonic() + 60
    tries = 0
    while time.monotonic() < end and not all_hung(instances):
        tries += 1
        inst = RNG.choice(live(instances) or instances)
        try:
            status, _, out = await request(inst.port, "POST", "/v1/jobs", headers, data, timeout=10)
        except NO_ANSWER:
            figures["create retries (no answer)"] += 1
            await asyncio.sleep(0.2); continue
        if status in (200, 201, 202):
            view = json.loads(out)
            spec.update(id=view["jobId"], instance=inst.index, created=time.monotonic() - T0)
            if tries > 1: figures["jobs created after a retry"] += 1
            return True
        if status in (429, 500, 502, 503):
            figures[f"create retries ({status})"] += 1
            await asyncio.sleep(0.3); continue
        violation("create refused", spec, f"POST /v1/jobs answered {status}: {out[:300]!r}")
        return False
    if not all_hung(instances):
        violation("create never answered", spec, "no 2xx within 60 s")
    return False


# MARK: - followers

class Follower:
    """Reads one job's events across cuts and resumes; checks versions as it goes."""

    def __init__(self, job, instances):
        self.job, self.instances = job, instances
        self.events = []        # (connection, instance, event, id, version, status)
        self.last_id = None
        self.last_version = None
        self.last_view = None
        self.done = None
        self.connections = 0
        self.gap = None

    def note(self, conn, inst, event, eid, view):
        version = view.get("version") if isinstance(view, dict) else None
        status = view.get("status") if isinstance(view, dict) else None
        self.events.append((conn, inst, event, eid, version, status))
        return version

    def check_event(self, event, eid, view, conn, inst):
        version = self.note(conn, inst, event, eid, view)
        figures["SSE events"] += 1
        if event == "snapshot":
            if self.last_version is not None:
                figures["SSE snapshots on resume"] += 1
                if version < self.last_version:
                    self.gap = f"snapshot went back: version {version} after {self.last_version}"
        elif event == "job":
            if self.last_version is None:
                self.gap = f"first event is a change (version {version}) without a snapshot"
            elif version != self.last_version + 1:
                self.gap = f"version {version} after {self.last_version}: " + ("a change skipped" if version > self.last_version else "out of order or repeated")
        if self.gap is None:
            self.last_version = version
            self.last_view = view
        if eid: self.last_id = eid

    async def run(self, deadline):
        job = self.job
        token = user_token(job["user"])
        cuts_left = RNG.choice([0, 1, 2, 3])
        prev_inst = None
        while self.done is None and self.gap is None and time.monotonic() < deadline and not all_hung(self.instances):
            pool = live(self.instances) or self.instances
            inst = RNG.choice(pool)
            self.connections += 1
            conn = self.connections
            if self.connections > 1:
                figures["SSE resumes"] += 1
                if prev_inst is not None and inst.index != prev_inst:
                    figures["SSE resumes on another instance"] += 1
            prev_inst = inst.index
            headers = {"Authorization": "Bearer " + token, "Accept": "text/event-stream"}
            if self.last_id: headers["Last-Event-ID"] = self.last_id
            cut_after = RNG.uniform(0.2, 2.5) if cuts_left > 0 else None
            try:
                status, head, reader, writer = await _open(inst.port, "GET", f"/v1/jobs/{job['id']}/events", headers, None, 5)
            except NO_ANSWER:
                await asyncio.sleep(0.2); continue
            try:
                if status != 200:
                    figures[f"SSE opens answered {status}"] += 1
                    self.events.append((conn, inst.index, f"HTTP {status}", None, None, None))
                    await asyncio.sleep(0.3); continue
                cut = await self.read(reader, head, conn, inst.index, cut_after)
                if cut:
                    cuts_left -= 1
                    figures["SSE cuts"] += 1
            except NO_ANSWER:
                pass  # the stream broke (an instance killed, Redis away): resume
            finally:
                writer.close()
            if self.done is None:
                await asyncio.sleep(0.05)

    async def read(self, reader, head, conn, inst, cut_after):
        """Reads events until done (False), the stream's end (False) or the cut (True)."""
        buf = b""
        event, eid, data = None, None, []
        chunks = _body_chunks(reader, head)
        end = time.monotonic() + cut_after if cut_after else None
        while True:
            timeout = (end - time.monotonic()) if end else 30
            if timeout <= 0: return True
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), timeout)
            except StopAsyncIteration:
                return False
            except asyncio.TimeoutError:
                if end: return True
                raise
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                line = line.rstrip(b"\r").decode("utf-8", "replace")
                if line == "":
                    if data and event in ("snapshot", "job"):
                        self.check_event(event, eid, json.loads("\n".join(data)), conn, inst)
                        if self.gap: return False
                    elif data and event == "done":
                        d = json.loads("\n".join(data))
                        self.events.append((conn, inst, "done", None, None, d.get("status")))
                        self.done = d
                        return False
                    event, eid, data = None, None, []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event": event = value
                    elif field == "id": eid = value
                    elif field == "data": data.append(value)


# MARK: - chaos actions

async def kill_and_restart(instance):
    log(f"SIGKILL clapper-{instance.index} (port {instance.port})")
    instance.restarting = True
    os.kill(instance.proc.pid, signal.SIGKILL)
    instance.proc.wait()
    instance.kills += 1
    figures["instance kills"] += 1
    # Down for 3 s: fal-sim's webhooks to it fail meanwhile and are retried (scaled schedule).
    await asyncio.sleep(3.0)
    instance.start()
    await instance.wait_ready()
    instance.restarting = False
    log(f"clapper-{instance.index} back")


async def restart_redis(redis):
    log("SIGTERM redis (AOF on)")
    redis.proc.terminate()
    await asyncio.get_running_loop().run_in_executor(None, redis.proc.wait)
    figures["redis restarts"] += 1
    redis.start()
    await asyncio.get_running_loop().run_in_executor(None, redis.wait_port)
    log("redis back (reloading its AOF)")


# MARK: - checks

def media_url(record):
    try:
        body = json.loads(record.get("webhookBody") or "null")
    except ValueError:
        return None
    node = (body or {}).get("payload")
    for part in MEDIA_PATH.get(record["model"], "video.url").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def record_prompt(record):
    try:
        return json.loads(record["input"]).get("prompt")
    except (ValueError, AttributeError):
        return None


def merge_records(view, records):
    """fal-sim's merge requests for this job: the ones whose input names its video and audio."""
    mine = []
    for r in records.get((MERGE_MODEL, None), []):
        try:
            given = json.loads(r["input"])
        except ValueError:
            continue
        if view.get("videoUrl") and given.get("video_url") == view.get("videoUrl") and given.get("audio_url") == view.get("audioUrl"):
            mine.append(r)
    return mine


def check_task(job, view, kind, model, records, problems):
    if kind == "merge":
        mine = merge_records(view, records)
    else:
        prompt = job["prompt"] + (AUDIO_SUFFIX if kind == "audio" else "")
        mine = [r for r in records.get((model, prompt), [])]
    accepted = [r for r in mine if r["state"] != "REJECTED"]
    status = view.get(f"{kind}Status")
    code = view.get(f"{kind}ErrorCode")
    shown_id = view.get(f"{kind}RequestId")
    figures["fal-sim submits"] += len(mine)
    if len(accepted) > 1:
        figures["double submissions"] += 1
        problems.append(f"{kind}: {len(accepted)} accepted submits at fal-sim: {[r['id'] for r in accepted]}")
        return
    if accepted:
        r = accepted[0]
        delivered = any(d.get("statusCode") and 200 <= d["statusCode"] < 300 for d in r.get("deliveries", []))
        if shown_id not in (None, r["id"]):
            problems.append(f"{kind}: request id {shown_id}, fal-sim accepted {r['id']}")
        if shown_id != r["id"] and not delivered:
            figures["tasks fal could not tell Clapper about"] += 1
            if not (status == "failed" and code == "submit_outcome_unknown"):
                problems.append(f"{kind}: fal-sim's answer was lost and no webhook got through: expected failed submit_outcome_unknown, got {status} {code}")
            return
        if r.get("outcome") == "ok":
            url = media_url(r)
            url_field = "mergedUrl" if kind == "merge" else f"{kind}Url"
            if status != "completed" or view.get(url_field) != url:
                problems.append(f"{kind}: fal-sim ok ({url}), Clapper {status} {view.get(url_field)} {code}")
        elif r.get("outcome") == "error":
            if status != "failed":
                problems.append(f"{kind}: fal-sim error, Clapper {status}")
        elif r.get("outcome") == "canceled":
            if status not in ("canceled", "failed", "timed_out"):
                problems.append(f"{kind}: fal-sim canceled, Clapper {status}")
        else:
            problems.append(f"{kind}: fal-sim never finished request {r['id']} (state {r['state']})")
        return
    if status == "completed":
        problems.append(f"{kind}: completed, yet fal-sim accepted no request for it")
    elif kind == "merge" and not (view.get("videoStatus") == "completed" and view.get("audioStatus") == "completed"):
        if not (status == "canceled" and (code == "merge_inputs_missing" or view.get("status") == "canceled")):
            problems.append(f"merge: video or audio did not complete, expected canceled merge_inputs_missing, got {status} {code}")
    elif kind == "merge" and view.get("status") == "canceled" and status == "canceled":
        pass
    elif kind == "audio" and job["mode"] == "after-video" and view.get("videoStatus") != "completed":
        if not (status == "canceled" and code == "video_failed") and not (status == "failed" and code in ("submit_failed", "submit_outcome_unknown")):
            problems.append(f"audio: after a failed video expected canceled video_failed, got {status} {code}")
    elif not (status == "failed" and code in ("submit_failed", "submit_outcome_unknown")):
        problems.append(f"{kind}: fal-sim accepted nothing ({len(mine)} refused), expected failed submit_failed/submit_outcome_unknown, got {status} {code}")


def derived_status(view):
    video = view.get("videoStatus")
    audio = view.get("audioStatus")
    merge = view.get("mergeStatus")
    ended = ("completed", "failed", "canceled", "timed_out")
    if video in ("failed", "timed_out"): return "failed"
    if video == "canceled": return "canceled"
    if video == "completed" and (audio is None or audio in ended) and (merge is None or merge in ended): return "completed"
    if any(s in ("running", "completed", "failed", "canceled", "timed_out") for s in (video, audio) if s): return "running"
    return "queued"


def explain(job, view, records):
    out = [f"job {job.get('id')} index {job['index']} user {job['user']} audio {job['audio']} tier {job['tier']} mode {job['mode']} created on clapper-{job.get('instance')}",
           f"  view: {json.dumps({k: v for k, v in (view or {}).items() if not k.endswith('Output')})[:1500]}"]
    for kind, model in (("video", VIDEO_MODEL), ("audio", SYNCED_MODEL if job["tier"] == "synced" else FAST_MODEL), ("merge", MERGE_MODEL)):
        prompt = job["prompt"] + (AUDIO_SUFFIX if kind == "audio" else "")
        for r in (merge_records(view or {}, records) if kind == "merge" else records.get((model, prompt), [])):
            out.append(f"  fal-sim {kind} {r['id']}: state {r['state']} outcome {r.get('outcome')} submit {r['submitStatus']} faults {r['faults']} "
                       f"deliveries {[(d['attempt'], d['copy'], d.get('statusCode') or d.get('error')) for d in r.get('deliveries', [])]}")
    f = followers.get(job.get("id"))
    if f:
        out.append(f"  follower: {f.connections} connections, events (conn, instance, event, id, version, status):")
        out += [f"    {e}" for e in f.events[-40:]]
    if job.get("id"):
        lines = []
        for name in sorted(os.listdir(TMP)):
            if name.startswith("clapper-") and name.endswith(".log"):
                with open(os.path.join(TMP, name), errors="replace") as fh:
                    lines += [f"    {name}: {l.rstrip()[:300]}" for l in fh if job["id"] in l]
        out.append(f"  instance log lines naming the job ({len(lines)}):")
        out += lines[-30:]
    return "\n".join(out)


# MARK: - main

async def fetch_view(job, instances):
    for _ in range(20):
        if all_hung(instances): return None
        inst = RNG.choice(live(instances) or instances)
        try:
            status, _, out = await request(inst.port, "GET", f"/v1/jobs/{job['id']}", {"Authorization": "Bearer " + user_token(job["user"])}, timeout=5)
            if status == 200: return json.loads(out)
        except NO_ANSWER:
            pass
        await asyncio.sleep(0.25)
    return None


async def main_async():
    redis_port, sim_port = free_port(), free_port()
    redis = RedisProc(STACK, redis_port)
    redis.start()
    sim = start("fal-sim", [os.path.join(args.bin, "fal-sim"), "--host", "127.0.0.1", "--port", str(sim_port), "--key", "sim-key:sim-secret",
                            "--user-id", FAL_USER, "--queue-delay-ms", "50", "--run-delay-ms", "300",
                            "--webhook-retry-scale", "0.02", "--stall-ms", "10000", "--chaos-seed", str(SEED),
                            *[a for rate in args.rate for a in ("--chaos-rate", rate)]])
    redis.wait_port()
    binary = os.path.join(args.bin, "clapper")
    instances = [Instance(STACK, binary, i, clapper_env(free_port(), redis_port, sim_port, fal_user=FAL_USER, webhook_secret=WEBHOOK_SECRET,
                                                         jwt_secret=JWT_SECRET, admin_token=ADMIN_TOKEN, timeout_seconds=args.timeout_seconds))
                 for i in range(args.instances)]
    for inst in instances: inst.start()
    for inst in instances: await inst.wait_ready()
    log(f"seed {SEED}: redis {redis_port}, fal-sim {sim_port}, clapper {[i.port for i in instances]}; logs in {TMP}")
    with open(os.path.join(TMP, "fal-sim.log"), errors="replace") as fh:
        plan = [l.strip() for l in fh if "chaos seed" in l]
    log(plan[0] if plan else "fal-sim did not print its chaos seed")

    load_seconds = max(5.0, args.minutes * 60)
    stop_watch = asyncio.Event()
    watcher = asyncio.create_task(watch(instances, stop_watch))
    victim = RNG.choice(instances)
    chaos_tasks = [asyncio.create_task(delayed(load_seconds * 0.3, kill_and_restart(victim))),
                   asyncio.create_task(delayed(load_seconds * 0.6, restart_redis(redis)))]
    settle_limit = args.timeout_seconds * 3 + 60
    follow_deadline = T0 + 10 + load_seconds + settle_limit
    follow_tasks = []
    creators = []
    interval = load_seconds / max(1, args.jobs)
    for index in range(args.jobs):
        spec = job_spec(index)
        jobs[index] = spec

        async def create_and_follow(spec=spec):
            if await create_job(spec, instances) and RNG.random() < args.follow:
                f = Follower(spec, instances)
                followers[spec["id"]] = f
                follow_tasks.append(asyncio.create_task(f.run(follow_deadline)))
        creators.append(asyncio.create_task(create_and_follow()))
        await asyncio.sleep(interval)
    await asyncio.gather(*creators)
    await asyncio.gather(*chaos_tasks)
    log(f"load done: {len(jobs)} jobs asked, {sum(1 for j in jobs.values() if j.get('id'))} created, {len(followers)} followed; waiting for every job to be final (at most {settle_limit} s)")

    # Settle: every job final (polling), every follower done.
    settle_end = time.monotonic() + settle_limit
    pending = [j for j in jobs.values() if j.get("id")]
    views = {}
    while pending and time.monotonic() < settle_end and not all_hung(instances):
        results = await asyncio.gather(*(fetch_view(j, instances) for j in pending[:100]))
        still = []
        for j, view in zip(pending[:100], results):
            if view and view.get("status") in ("completed", "failed", "canceled"):
                views[j["id"]] = view
            else:
                still.append(j)
        pending = still + pending[100:]
        if pending: await asyncio.sleep(1.0)
    # Quiet a moment so late webhooks (a repeat, a retry) land before the final reads.
    await asyncio.sleep(3.0)
    try:
        await asyncio.wait_for(asyncio.gather(*follow_tasks), max(5.0, follow_deadline - time.monotonic()))
    except asyncio.TimeoutError:
        pass
    status, _, out = await request(sim_port, "GET", "/_sim/requests", timeout=30)
    all_records = json.loads(out)
    records = collections.defaultdict(list)
    for r in all_records:
        records[(r["model"], record_prompt(r))].append(r)
        for name in r["faults"]:
            figures["fault " + name.split("=")[0]] += 1
        for d in r.get("deliveries", []):
            figures["webhook deliveries"] += 1
            if not (d.get("statusCode") and 200 <= d["statusCode"] < 300): figures["webhook deliveries failed"] += 1

    # Checks.
    created = [j for j in jobs.values() if j.get("id")]
    final_views = {}
    for start_at in range(0, len(created), 50):
        batch = created[start_at:start_at + 50]
        for j, v in zip(batch, await asyncio.gather(*(fetch_view(j, instances) for j in batch))):
            final_views[j["id"]] = v
    if all_hung(instances):
        log("every instance hung: no job can be checked")
    for job in jobs.values():
        if all_hung(instances):
            break
        if not job.get("id"):
            figures["jobs lost"] += 1
            continue
        view = final_views.get(job["id"])
        if view is None:
            figures["jobs lost"] += 1
            violation("job unreadable", job, explain(job, None, records)); continue
        figures[f"jobs {view['status']}"] += 1
        problems = []
        if view["status"] not in ("completed", "failed", "canceled"):
            problems.append(f"not final: {view['status']}")
        if view["status"] != derived_status(view):
            problems.append(f"job status {view['status']}, derived from its tasks {derived_status(view)}")
        check_task(job, view, "video", VIDEO_MODEL, records, problems)
        if job["audio"]:
            check_task(job, view, "audio", SYNCED_MODEL if job["tier"] == "synced" else FAST_MODEL, records, problems)
            if view.get("videoStatus") == "completed" and view.get("audioStatus") == "failed":
                figures["jobs completed with audio failed"] += 1
        if view.get("mergeStatus") is not None:
            check_task(job, view, "merge", MERGE_MODEL, records, problems)
            figures[f"merges {view['mergeStatus']}"] += 1
        if problems:
            figures["jobs lost"] += 1
            violation("job differs from fal-sim's truth", job, "; ".join(problems) + "\n" + explain(job, view, records))
        f = followers.get(job["id"])
        if f:
            figures["followers"] += 1
            gap = f.gap
            if gap is None and f.done is None:
                gap = "the stream never ended with done"
            if gap is None:
                last = {k: v for k, v in (f.last_view or {}).items() if k != "eventsUrl"}
                now = {k: v for k, v in view.items() if k != "eventsUrl"}
                if f.done.get("status") != (f.last_view or {}).get("status"):
                    gap = f"done says {f.done.get('status')}, the last view {(f.last_view or {}).get('status')}"
                elif last != now:
                    gap = f"last state seen (version {last.get('version')}) differs from GET (version {now.get('version')})"
            if gap:
                figures["SSE gaps"] += 1
                violation("SSE", job, gap + "\n" + explain(job, view, records))

    # Every instance alive and ready.
    stop_watch.set()
    await watcher
    for inst in instances:
        ok = False
        if getattr(inst, "hung", False):
            continue  # counted when it was found
        if inst.up:
            try:
                ok = (await request(inst.port, "GET", "/readyz", timeout=5))[0] == 200
            except NO_ANSWER:
                ok = False
        if not ok:
            if inst.up:
                log(f"clapper-{inst.index} does not answer: thread stacks in {dump_stacks(inst)}")
            figures["instances not ready at the end"] += 1
            violation("instance", None, f"clapper-{inst.index} {'not ready' if inst.up else 'dead'} at the end; log {TMP}/clapper-{inst.index}.log")
    figures["fal-sim requests"] = len(all_records)


async def delayed(seconds, coro):
    await asyncio.sleep(seconds)
    await coro


def report():
    keys = ["jobs lost", "double submissions", "SSE gaps", "instances hung", "instances not ready at the end"]
    for k in keys: figures.setdefault(k, 0)
    print(f"\nops/chaos seed {SEED}: {args.jobs} jobs over {args.minutes} min, {args.instances} instances, "
          f"{time.monotonic() - T0:.0f} s in all")
    print("| invariant | count |\n|---|---|")
    for k in keys: print(f"| {k} | {figures[k]} |")
    print("\n| figure | count |\n|---|---|")
    for k in sorted(figures):
        if k not in keys: print(f"| {k} | {figures[k]} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seed": SEED, "jobs": args.jobs, "minutes": args.minutes, "instances": args.instances, "figures": dict(figures)}, fh, indent=1, sort_keys=True)


def main():
    code = 0
    try:
        asyncio.run(main_async())
    except SystemExit as e:
        print(f"ops/chaos: {e}", file=sys.stderr); code = 2
    finally:
        STACK.stop_all()
    report()
    if violations or code:
        print(f"\nops/chaos FAILED: {len(violations)} violation(s); seed {SEED} (replay: ops/chaos --seed {SEED} --jobs {args.jobs} --minutes {args.minutes}{''.join(' --rate ' + r for r in args.rate)}); logs kept in {TMP}", file=sys.stderr)
        sys.exit(1)
    print(f"\nops/chaos passed (seed {SEED})")
    if args.keep:
        print(f"logs kept in {TMP}")
    else:
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
