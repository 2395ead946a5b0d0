"""Every default of emp, in one place, each with the reason it has that value.

Settings (``emp.config``) and CLI options read their defaults from here; nothing else hard-codes
a timeout, TTL, size or interval.
"""

from __future__ import annotations

NAMESPACE = "emp"
"""Key namespace: keys live under ``{emp}:`` (one hash tag, so every Function is cluster-safe)."""

LEASE_TTL_S = 30.0
"""How long a claimed job stays owned without a heartbeat. Long enough to ride out a GC pause or a
slow network; short enough that a dead spot machine's job is back in the queue within a minute."""

HEARTBEAT_FRACTION = 1 / 3
"""Workers heartbeat every lease_ttl * this: two heartbeats may be lost before the lease lapses."""

WORKER_TTL_S = 30.0
"""A worker registration lives this long without a refresh; live-worker views drop it after."""

WORKER_REDIS_TIMEOUT_S = 10.0
"""How long a worker waits for one Redis reply before it drops the connection and retries (every
worker call is idempotent: claims carry a request id, completes answer ALREADY). Without a limit a
reply lost on the way (a half-open connection, a middlebox that lost its state) hangs the worker
for good. Far above any one call's time (each is bounded work), and a third of the lease: a stuck
heartbeat is retried before the lease lapses."""

WAKE_WAIT_S = 1
"""An idle worker's BLPOP on its wake list blocks this long per call (whole seconds); its connection
waits this much longer than WORKER_REDIS_TIMEOUT_S for the reply."""

IDLE_POLL_S = 5.0
"""An idle worker re-checks the queues this often even without a wake-up (pub/sub-free fallback
for a lost wake: a wake list entry can be lost only if Redis restarts)."""

IDLE_TTL_S = 15.0
"""An idle-set entry outlives three idle polls; a dead idle worker stops being woken after it."""

WAKE_CANDIDATES = 8
"""How many members of one idle set (the job's signature, workflow or customer) one enqueue inspects
to find a worker that may run the job: every member matches the signature, so only per-job rules
(a denied customer, an avoided worker) can turn one down."""

CLAIM_LOOKAHEAD = 16
"""The first page a claim reads of a queue whose jobs it checks one by one (customer rules) and of a
workflow / customer index; deeper pages are CLAIM_PAGE_DEEP long."""

MAINTENANCE_PAGE = 100
"""Due scheduled jobs promoted / expired leases requeued per Function call: bounded work."""

MAX_ATTEMPTS = 3
"""Counted attempts per job (the original's max_retries=3 meant 3 attempts)."""

MAX_LOST_LEASES = 3
"""Lost leases (worker died) before a job is failed as worker_lost: stops a poison job that kills
every worker it lands on."""

MAX_UNAVAILABLE = 20
"""service_unavailable requeues (not counted as attempts) before the job fails anyway."""

RETRY_BASE_MS = 1000
RETRY_MAX_MS = 60_000
RETRY_JITTER = 0.5
"""Exponential backoff for transient/timeout/unknown failures: base * 2^(tries-1), capped, then
reduced by up to JITTER (x (1 - jitter*r)) so a burst of failures does not retry in lockstep."""

UNAVAILABLE_DELAY_MS = 2000
"""A job whose service was down is requeued after this, without using an attempt."""

PRIORITY = 50
PRIORITY_MIN = 0
PRIORITY_MAX = 1000

MAX_PAYLOAD_BYTES = 1_048_576
"""Largest payload accepted (JSON text). GPU jobs carry graphs and URLs, not images: images go
through storage. Checked by the client and again inside the submit Function."""

MAX_BATCH = 1000
"""Jobs per submit Function call when submitting in bulk: keeps one call under a few ms. The submit
Function refuses a bigger batch; clients split theirs."""

# -- submission limits: enforced by emp/model/job.py and again by submit.lua (a client that skips
#    its own checks must not queue a job no worker or view can handle) ----------------------------

SERVICE_NAME_MAX = 64
"""Longest service name: it is part of queue keys and of every listing row; a longer one is a typo
or an attack, never a real service."""

JOB_ID_MAX = 200
"""Longest job id: ids appear in keys, events and queue members; room enough for any uuid-based or
app-prefixed id."""

TEXT_FIELD_MAX = 200
"""Longest customer_id / workflow_id: they name index keys (qc:, qwf:) and appear in events."""

MAX_ATTEMPTS_CEILING = 100
"""Largest max_attempts a job may ask for: beyond this a failing job would keep a GPU busy for hours."""

MAX_MS = 10**15
"""Upper bound of millisecond timestamps (year 33658): run_at and workflow_datetime above it are typos."""

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a payload (and in requirements): ComfyUI graphs nest 4-6 levels; a
deeper document is a mistake or an attack on the JSON parsers of every worker that reads it."""

REQUIREMENTS_MAX_BYTES = 16_384
"""Largest requirements (UTF-8 bytes of their canonical JSON text): they are stored with the job's
signature and matched against every idle worker's capabilities at each claim, so they stay small
(a few keys and model names; real ones are well under 1 KiB)."""

# -- what workers write back (checked by the worker before it calls Redis) -------------------------

RESULT_MAX_BYTES = 1_048_576
"""Largest job result (UTF-8 bytes of its JSON text) stored in the job's hash: a bigger one fails
the attempt as malformed, saying so. Results carry text and output URLs; the bytes of images and
videos go to output storage."""

PROGRESS_MESSAGE_MAX = 500
"""Characters of a progress message kept (longer ones are cut): it is written to the job's hash and
an event at every progress write."""

WORKER_ID_MAX = 200
MACHINE_ID_MAX = 200
"""Longest worker / machine id (they are parts of keys and appear in every event and listing row);
like job ids they hold no spaces or control characters."""

EVENTS_MAXLEN = 100_000
"""Approximate cap of the global event stream; views that fall further behind re-snapshot."""

JOB_EVENTS_MAXLEN = 200
"""Approximate cap of one job's event stream (progress is coalesced, so this is plenty)."""

RETENTION_S = 7 * 24 * 3600
"""Terminal jobs (and their payload and events) expire after this."""

OFFLINE_RECORD_TTL_S = 24 * 3600
"""A worker or machine that went offline keeps its record this long, for post-mortems."""

HISTORY_MAX = 20
"""Attempt records kept in a job's history (the oldest go first): enough to see a pattern of failures
without letting a job that fails forever grow its hash."""

HISTORY_ERROR_MAX = 500
ERROR_MAX = 2000
EVENT_ERROR_MAX = 300
"""Characters of an error text kept in an attempt record, in the job's ``error`` field and in an
event: a traceback is cut, the first lines (where the cause is) are kept, and events stay small."""

# -- Function internals and page sizes (every one reaches the Lua library through the generated
#    table D; every page size a caller passes is clamped to its *_MAX) -------------------------------

HEADS_PAGE = 16
"""Signature heads a claim reads per round trip inside the Function: the best matching head is
usually near the top, so one page is the common case."""

HOUSEKEEP_EVERY_MS = 50
"""A claim that finds work promotes due jobs and requeues expired leases at most this often per
namespace: recovery within a blink, no extra reads on every claim of a busy fleet."""

STALL_LEASE_PCT = 50
"""Stall grace (reliability.md T9, G5): when Redis hears no heartbeat for longer than this share of
the (shortest) lease heartbeating lately, the silence is judged a stall of Redis (it was stopped)
and the leases that lapsed in it get the time they had left back before anything is requeued.
Workers heartbeat every third of their lease (HEARTBEAT_FRACTION), and a stall costs a lease only
past two thirds of it: half is between the two."""

STALL_MIN_MS = 1000
"""...and longer than this: a shorter silence is never judged a stall (it can cost only leases
under 1.5 s, which tests use, not fleets)."""

STALL_GRACE_MAX_MS = 60_000
"""The longest stall granted back (twice the default lease): after a longer one, leases that
lapsed more than this before the wake are requeued at once."""

WAKE_LIST_TTL_MS = 60_000
"""A wake list whose worker never read it (the process died) disappears after this."""

LAPSED_SWEEP_PAGE = 100
"""Lapsed service / machine entries removed from their liveness index per report: bounded work."""

MAINTENANCE_PAGE_MAX = 1000
"""Largest page a maintain / cleanup / mark_unworkable / revive_unworkable call accepts."""

UNWORKABLE_PAGE = 500
"""Jobs moved per mark / revive call (also what a registration that can run an unworkable signature
revives at once; the maintenance pass moves the rest)."""

LIST_PAGE = 50
LIST_PAGE_MAX = 1000
"""Rows of one listing call (emp jobs list), by default and at most: a page costs a few ms at most."""

LIST_SCAN_MAX = 5000
"""Index entries one listing call may pass over to fill a filtered page (a service filter on ended
jobs, entries whose job expired): the page comes back short, with a cursor to go on."""

COUNT_SCAN_PAGE = 5000
"""Index entries one count call reads job by job (a service filter on scheduled, running and ended
jobs, which have no per-service index): the client calls again with the cursor until done."""

FLEET_PAGE = 500
"""Workers, services or machines per listing call (live views page through them)."""

JOB_EVENTS_PAGE = 100
"""Recent events `emp jobs show` reads with a job (its stream holds about JOB_EVENTS_MAXLEN)."""

SNAPSHOT_ACTIVE_JOBS = 200
SNAPSHOT_WORKERS = 500
SNAPSHOT_RECENT = 20
"""Rows of a fleet snapshot by default: running jobs, live workers, recently ended jobs per status
(each clamped to LIST_PAGE_MAX)."""

UNWORKABLE_GRACE_S = 30.0
"""A job waits this long with no live matching worker before it is marked unworkable: fleets
restart workers, and a job should not flip to unworkable during a rolling restart."""

PROGRESS_MIN_INTERVAL_S = 0.25
"""Workers write progress at most 4 times a second per job; the last value is always written."""

DRAIN_TIMEOUT_S = 25.0
"""First SIGTERM: let the running job finish this long (Salad/K8s give 30 s before SIGKILL)."""

STATE_DIR_NAME = "emp"
"""Local state (embedded redis-server data and its URL file) lives under $XDG_STATE_HOME/emp."""

MAINTENANCE_INTERVAL_S = 5.0
"""Unworkable detection and retention run this often, by one process of the fleet at a time
(a guard key decides which): often enough that an impossible job is reported within seconds of
its grace period, rare enough to cost nothing."""

SERVICE_CHECK_INTERVAL_S = 2.0
"""A worker checks its service's health this often (ComfyUI: GET /system_stats, ~1 ms): a dead
service stops the worker claiming within seconds, and a restarted one is back as quickly."""

SERVICE_REPORT_INTERVAL_S = 15.0
"""A service's status is written to Redis when it changes and at least this often."""

SERVICE_STATUS_TTL_S = 45.0
"""A service record lapses after this without a report (three missed reports): a worker that
died takes its service out of the fleet view, no phantom stays."""

SERVICE_STARTING_GRACE_S = 120.0
"""A service never seen healthy is "starting" (not "offline") this long after its worker began:
ComfyUI takes 10-60 s to boot on a fresh box."""

OUTPUT_DIR_NAME = "outputs"
"""Job outputs go to <state dir>/outputs unless EMP_OUTPUT_URL says otherwise."""

SERVICE_RECORD_MODELS = 100
"""A service's status record lists at most this many of its models (a ComfyUI box may have
hundreds of LoRAs; the worker's capabilities keep the full list for matching)."""

# -- machine agent (emp machine up) ------------------------------------------------------------

HEALTH_HOST = "127.0.0.1"
HEALTH_PORT = 9090
"""The agent's health endpoint (the original's port). Loopback by default: a probe from outside
the box (Salad) needs EMP_HEALTH_HOST=0.0.0.0, a choice the operator makes knowingly."""

MACHINE_REPORT_INTERVAL_S = 15.0
"""The machine record (host, GPU readings, processes) is refreshed this often."""

MACHINE_TTL_S = 45.0
"""A machine record lapses after this without a report (three missed): a vanished box drops out."""

MACHINE_SERVICE_READY_TIMEOUT_S = 300.0
"""A service (ComfyUI) must answer its readiness check within this after starting; a cold
ComfyUI with many custom nodes takes a minute or two on a fresh box."""

MACHINE_WORKER_READY_TIMEOUT_S = 60.0
"""A worker process must have registered (and found its service up) within this."""

COMFYUI_DIR = "/workspace/ComfyUI"
COMFYUI_BASE_PORT = 8188
"""GPU i's ComfyUI listens on base + i (the original's COMFYUI_BASE_PORT)."""

COMFYUI_REPO = "https://github.com/comfyanonymous/ComfyUI.git"
COMFYUI_REF = "v0.8.0"
"""Stock ComfyUI at the version our connector and fake are checked against (no fork needed)."""

INSTALL_PARALLEL = 5
"""Custom nodes installed at once (the original's batch size)."""

# -- GPUs, host info and ComfyUI provisioning (emp/agent/gpu.py, host.py, provision.py) ---------------

FAKE_GPU_MODEL = "NVIDIA GeForce RTX 4090 (fake)"
FAKE_GPU_MEMORY_GB = 24
"""A declared fake GPU (--gpus N, EMP_GPUS) looks like the common rented card unless told otherwise
(EMP_GPU_MODEL, EMP_GPU_MEMORY_GB): jobs written for a 4090 match it in demos and tests."""

INSTALL_STEP_TIMEOUT_S = 1800.0
"""One git or pip command during `emp machine install` is killed after this: a clone of a big
node repository or a torch-sized pip install takes minutes, a hung network must not take forever."""

# -- machine agent: process supervision and health endpoint (emp/agent/supervisor.py, process_state.py,
#    reaper.py, health.py) -------------------------------------------------------------------------

PROCESS_RESTART_INITIAL_S = 1.0
PROCESS_RESTART_FACTOR = 1.5
PROCESS_RESTART_MAX_S = 15.0
"""Restart backoff after a crash: 1 s, 1.5 s, 2.25 s, ... capped at 15 s (PM2's exponential backoff):
a crash loop costs little, and a service that recovers is back within seconds."""

PROCESS_RESTART_RESET_S = 30.0
"""A process that stayed ready this long was healthy: its next crash starts the backoff afresh (PM2)."""

PROCESS_MAX_QUICK_FAILURES = 5
"""Consecutive quick failures (each ended before 30 s of readiness) before a process is FATAL and left
down: a broken install should be reported, not restarted forever."""

PROCESS_READY_TIMEOUT_S = 120.0
"""A process not ready this long after its start is killed and counts as a failed start (ComfyUI takes
10-60 s to boot on a fresh box)."""

PROCESS_READY_POLL_S = 0.25
"""Readiness is polled this often while a process starts: readiness is seen within a quarter second."""

PROCESS_START_SECS = 1.0
"""A process without a readiness check is RUNNING once it stayed up this long (supervisord startsecs)."""

PROCESS_STOP_TIMEOUT_S = 10.0
"""SIGTERM to a process group, then SIGKILL after this (supervisord stopwaitsecs); Salad and K8s give
30 s in all before they SIGKILL the box, and workers drain first."""

PROCESS_LOG_MAX_BYTES = 10 * 1024 * 1024
PROCESS_LOG_BACKUPS = 3
"""Per-process logs rotate at 10 MiB and keep 3 old files: 40 MiB per process at most on a small disk."""

PROCESS_NOTIFY_FLUSH_S = 2.0
"""At shutdown, state changes not yet delivered to on_change get this long (they publish to Redis)."""

REAP_INTERVAL_S = 1.0
"""As PID 1, the agent looks for orphaned zombies this often; one that is still a zombie on the next
look has no other parent waiting for it and is reaped."""

HEALTH_LOG_LINES = 100
HEALTH_LOG_MAX_LINES = 10_000
"""GET /logs returns 100 lines unless asked, and never more than 10,000."""

MACHINE_WORKER_STOP_GRACE_S = 10.0
"""On shutdown a worker gets the drain timeout plus this before SIGKILL: time to release the jobs
it could not finish (a release is one Redis call) and say it is offline."""

# -- leaks and OOM retries ----------------------------------------------------------------------

LIVE_WORKER_SCAN = 1000
"""How many live workers a Function looks at to learn whether one can run a job (after
resource_exhausted: another worker, one with more GPU memory) or serves a service (pruning the
`services` set). A larger fleet is assumed to have one: the job is retried, the service kept."""

UNWORKABLE_RETENTION_S = 24 * 3600
"""A job that stays unworkable this long (no live worker can run it) fails as `unworkable`, visibly,
instead of waiting forever: rented fleets change within hours, a day covers a weekend restart."""

PRUNE_SERVICES_PAGE = 100
"""Services the cleanup Function looks at per call when it prunes the `services` set."""

# -- mixed fleets: wake, claim depth, signature lifecycle -----------------------------------------

CLAIM_PAGE_DEEP = 128
"""Heads, queue members or index members a claim reads per page once the first page did not settle
it: a claim walks without a cap (no starvation), and big pages keep a deep walk to a few reads."""

CLAIM_SCAN_MAX = 2000
"""Job records one claim call may read to check per-job rules (customer, workflow, avoided workers):
bounds how long one call holds Redis (~2-3 ms) when rules skip thousands of jobs; the claim returns
the best it found, and the worker's next claim looks again."""

CLASS_INDEX_MAX = 8
"""Capability classes (workers with the same capabilities JSON) that get a claim index per service:
every change of a signature's head costs one more ZADD/ZREM per indexed class that matches it, so
this bounds the write cost of the hot path. Most fleets have a handful of classes; workers of any
class past this many claim by today's walk of every head (docs/internals.md "Claim index")."""

IDLE_FILL_MAX = 200
"""Idle workers of a service tested at once against a new signature (to join its idle set); any
others join at their next idle poll (idle_poll_s): a new signature costs at most this much."""

SIGNATURE_RETIRE_GRACE_S = 60.0
"""A signature whose queue stayed empty this long is retired (its entry, idle set and match-cache
entries): a steady trickle of jobs keeps its signature and warm caches between jobs, and a thousand
one-off requirement sets are gone a minute or two after their last job."""

SIGNATURE_RETIRE_PAGE = 200
"""Signatures one retirement call examines per service (HSCAN page): bounded work per call."""

# -- coordinator HTTP API (emp coordinator) -------------------------------------------------------

COORDINATOR_HOST = "127.0.0.1"
"""The API listens on loopback unless told otherwise: a broker API reachable from the network must be
a deliberate choice (and then needs EMP_API_TOKEN, or --insecure)."""

COORDINATOR_PORT = 8700
"""A fixed, memorable port next to ComfyUI's 8188 range and clear of the common 8000/8080."""

API_SHUTDOWN_TIMEOUT_S = 3.0
"""On SIGTERM the API waits this long for requests in flight; open event streams end within one
stream read (API_SSE_BLOCK_MS), so a few seconds cover both without delaying a rolling restart."""

API_SSE_BLOCK_MS = 1000
"""One blocking read of a job's event stream lasts at most this long; then the SSE handler writes a
keep-alive comment (proxies drop connections silent for ~60 s) and notices a shutdown."""

API_LIST_FILL_CALLS = 10
"""GET /api/jobs calls the listing Function up to this many times to fill a page that a service filter
or expired entries left short; past that it returns a short page with its cursor (bounded work)."""

API_CORS_MAX_AGE_S = 600
"""Browsers cache a CORS preflight answer this long (10 min; Chromium caps it at 2 h anyway)."""

API_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body: a full batch (MAX_BATCH jobs) of payloads near MAX_PAYLOAD_BYTES each would be
more, but such batches belong in several requests; this bounds the memory one request can take."""

STATS_WINDOWS_S = (60, 300, 900, 3600)
"""GET /api/stats and /metrics report these recent windows (1 min, 5 min, 15 min, 1 h)."""

FLOWS_PAGE = 20
"""GET /api/flows lists this many running flows unless asked (the dashboards show about ten)."""

FLOWS_STEPS = 20
"""... each with at most this many steps (those not ended first): bounded, whatever a flow's size."""

STATS_SPARK_MINUTES = 10
"""GET /api/stats counts the jobs ended in each of the last 10 minutes (the dashboards' sparkline)."""

STATS_SAMPLE_MAX = 1000
"""Ended jobs per status read for the wait/run percentiles (the newest in the largest window): the
counts and rates are exact, the percentiles come from at most this many jobs, so a stats call stays
a few milliseconds whatever the throughput."""

METRICS_WINDOW_S = 300
"""/metrics reports outcomes and wait/run histograms over the last 5 minutes (a rolling window, not a
running total: the done indexes are trimmed by retention, so no monotonic counter exists in Redis)."""

METRICS_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
"""Histogram buckets of wait and run times: from a warm pickup (~ms) to hour-long renders."""

# -- coordinator upkeep: leadership and sweeps (emp/coordinator/leader.py, upkeep.py, docs/upkeep.md)

UPKEEP_ROLE = "upkeep"
"""The leader role whose lease decides which coordinator runs the upkeep sweeps."""

LEADER_LEASE_S = 5.0
"""A leader's lease: when the leader dies another coordinator takes over within this plus one
acquire interval (issue 10: "within seconds"); long enough that a busy event loop or a slow Redis
round trip does not make a healthy leader lose it (it renews every third of it)."""

LEADER_RENEW_FRACTION = 1 / 3
"""The leader renews every lease * this: two renewals may fail before the lease lapses."""

LEADER_ACQUIRE_INTERVAL_S = 1.0
"""A follower tries to take the lease this often: one cheap Function call a second per coordinator,
and a takeover at most a second after the lease lapsed."""

UPKEEP_INTERVAL_S = 1.0
"""The leader requeues expired leases, promotes due jobs, marks silent workers and machines offline
and trims the indexes this often (each step one bounded Function call that costs microseconds when
there is nothing to do). Unworkable detection and signature retirement, which read every live
worker and signature, keep MAINTENANCE_INTERVAL_S."""

REDIS_WATCH_INTERVAL_S = 1.0
"""Every coordinator reads Redis's run_id and the namespace's figures this often, to notice a restart
(and whether it lost data) within seconds (reliability.md T7; emp/coordinator/redis_watch.py)."""

# -- outputs in object storage (issue 12, storage: emp/storage/object.py, docs/storage.md)

OUTPUT_RETRY_TIMEOUT_S = 60.0
"""An object-store request is retried (backoff with jitter) for at most this long before the attempt
fails as transient: long enough to ride out a store restart or a network blip, short enough that a
dead store frees the GPU within a minute (the job itself is retried by the broker with backoff)."""

OUTPUT_MAX_RETRIES = 10
"""Retries of one object-store request within OUTPUT_RETRY_TIMEOUT_S (obstore's own default)."""

OUTPUT_CHUNK_BYTES = 8 * 1024 * 1024
"""Part size of multipart uploads; outputs larger than this go up in parts. S3's minimum part is
5 MiB, and its 10,000-part limit times 8 MiB allows outputs up to ~80 GB."""

OUTPUT_UPLOAD_CONCURRENCY = 8
"""Parts of one output uploaded at once: enough to fill a GPU box's uplink, few enough that a
worker's uploads do not starve its own Redis heartbeats on a 1 Gb/s link."""

OUTPUT_PRESIGN_S = 0.0
"""Presigned GET URLs in results are off unless asked for (EMP_OUTPUT_PRESIGN_S): a presigned URL
hands read access to anyone who sees the result, so it is an explicit choice."""

OUTPUT_RETENTION = "tag"
"""Object-store outputs are tagged ``emp-retention=<days>d`` so a bucket lifecycle rule deletes them
when the job expires (docs/storage.md); ``keep`` leaves them untagged."""

# -- recurring schedules (issue 12, schedules: emp/model/schedule.py, docs/schedules.md)

SCHEDULE_NAME_MAX = 64
"""A schedule name is part of its jobs' ids (``sched:<name>:<occurrence ms>``): short enough that the
id stays far below JOB_ID_MAX."""

SCHEDULE_EVERY_MIN_MS = 1000
"""The shortest ``--every``: the upkeep leader fires schedules once a pass (UPKEEP_INTERVAL_S, 1 s), so
a shorter period could only be caught up in bursts."""

SCHEDULE_EVERY_MAX_MS = 366 * 86_400_000
"""The longest ``--every`` (a year and a day); anything rarer is a cron expression."""

SCHEDULE_GRACE_S = 60.0
"""An occurrence at most this old when a pass sees it is fired on its own (a late pass, a leader
change: a SIGKILLed leader's lease lapses after LEADER_LEASE_S); older ones count as missed and follow
the schedule's policy (skip / once). Well above a leader takeover, well below any cron period that
would make a late run surprising."""

SCHEDULE_PAGE = 100
"""Due schedules one pass reads and fires (the rest wait for the next pass, a second later)."""

SCHEDULE_CATCHUP_MAX = 120
"""Fire calls one pass makes for one schedule (catching up occurrences within the grace, e.g. an
``--every 1s`` schedule after a minute-long leader gap); the next pass goes on."""

SCHEDULE_MISSED_COUNT_MAX = 100_000
"""Missed cron occurrences counted one by one (for ``skipped`` and the ``once`` job's count); past it
the count stops (``--every`` counts by arithmetic, exactly)."""

# -- what a connector accepts from its service (issue 13: a hostile or broken service must not
#    exhaust a worker's memory or hang it past its timeouts; emp/worker/connectors/http.py, ws.py)

CONNECTOR_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest answer of a service's API (JSON, history, status; the body of a REST result with its
base64 outputs) read into memory, and the most a streamed answer may send (a line that never ends
included); a bigger one fails the attempt as malformed. Downloads of output files have their own,
larger cap (CONNECTOR_MAX_DOWNLOAD_BYTES)."""

CONNECTOR_MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024
"""Largest output file a connector downloads from its service (ComfyUI's GET /view): videos are big,
but a file larger than this is not an output a worker should hold in memory."""

CONNECTOR_WS_MAX_FRAME_BYTES = 256 * 1024 * 1024
"""Largest WebSocket frame accepted (ComfyUI's SaveImageWebsocket sends full-size images in one
binary frame; websockets' 1 MiB default would close the socket on the first one)."""

CONNECTOR_WS_MAX_QUEUE = 4
"""Frames the WebSocket client buffers before it stops reading the socket (TCP back-pressure): with
CONNECTOR_WS_MAX_FRAME_BYTES, what a flooding service can make the client hold."""

CONNECTOR_WS_BUFFER_BYTES = 512 * 1024 * 1024
CONNECTOR_WS_BUFFER_EVENTS = 100_000
"""Bytes of binary frames and number of events one running prompt may have waiting unread; past
either the attempt fails as transient (a service flooding the socket faster than the job reads)."""
