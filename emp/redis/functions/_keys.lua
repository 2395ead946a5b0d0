--[[
  _keys.lua: every key name of the library, one builder each in the table K (the twin of
  emp/redis/keys.py: tests/redis/test_keys.py holds each builder against the Python method of the
  same name, and fails when a builder exists on one side only).

  The rule: every key is P .. suffix, where P = "{<namespace>}:" comes in ARGV[1] of each call, so
  all keys of a namespace share one hash tag (one cluster slot) and the library never hard-codes a
  namespace. KEYS[1] of each call names one key of the namespace: the slot anchor that routes the
  call on Redis Cluster. Operation files never concatenate a key themselves: they call K.
  The full table is in docs/internals.md "Keys".
]]

local K = {}

-- Jobs. Payload and events keys have their own prefixes: a job id may contain ':', and
-- 'job:a:payload' must never be both job "a"'s payload and job "a:payload"'s hash.
function K.job(P, id) return P .. 'job:' .. id end
function K.payload(P, id) return P .. 'payload:' .. id end
function K.job_events(P, id) return P .. 'jobevents:' .. id end
function K.seq(P) return P .. 'seq' end
function K.scheduled(P) return P .. 'scheduled' end
function K.waiting(P) return P .. 'waiting' end -- flows: steps waiting for their parents (by submit time)
function K.leases(P) return P .. 'leases' end
function K.unworkable(P) return P .. 'unworkable' end
function K.done(P, status) return P .. 'done:' .. status end

-- Queues and their indexes.
function K.services(P) return P .. 'services' end
function K.queue(P, svc, sig) return P .. 'q:' .. svc .. ':' .. sig end
function K.unworkable_queue(P, svc, sig) return P .. 'uq:' .. svc .. ':' .. sig end
function K.heads(P, svc) return P .. 'heads:' .. svc end
function K.sigs(P, svc) return P .. 'sigs:' .. svc end
function K.usigs(P, svc) return P .. 'usigs:' .. svc end
-- Signature lifecycle: when each live signature was first seen with an empty queue, and the
-- retirement walk's HSCAN cursors (field: service, or 'u:' .. service for usigs).
function K.empty_sigs(P, svc) return P .. 'esigs:' .. svc end
function K.sig_scan(P) return P .. 'sigscan' end
function K.workflow_queue(P, svc, wf) return P .. 'qwf:' .. svc .. ':' .. wf end
function K.customer_queue(P, svc, c) return P .. 'qc:' .. svc .. ':' .. c end
-- Capability classes (docs/internals.md "Claim index"): the classes indexed for a service
-- (class -> caps JSON), which indexed classes match each judged signature (sig -> ' c1 c2', '' for
-- none), and per class the heads of the signatures it matches (members and scores as in heads:).
-- A class id is 16 hex digits and a service has no ':', so no key collides with another's.
function K.classes(P, svc) return P .. 'mcls:' .. svc end
function K.sig_classes(P, svc) return P .. 'hcls:' .. svc end
function K.class_heads(P, svc, cls) return P .. 'mheads:' .. svc .. ':' .. cls end

-- Workers.
function K.worker(P, wid) return P .. 'worker:' .. wid end
function K.workers(P) return P .. 'workers' end
function K.worker_matches(P, wid) return P .. 'wm:' .. wid end
-- The live workers of one capability class (set; the class's indexes go when it is empty).
function K.class_workers(P, cls) return P .. 'cw:' .. cls end
function K.idle(P, svc) return P .. 'idle:' .. svc end
-- Idle workers by what they can take: a signature (unrestricted workers), a workflow (workers
-- restricted to it), a customer (workers with an allowed-customers list). A sig is 16 hex digits
-- and a service has no ':', so 'idle:<svc>:<sig>' never collides with another service's 'idle:<svc>'.
function K.idle_sig(P, svc, sig) return P .. 'idle:' .. svc .. ':' .. sig end
function K.idle_workflow(P, svc, wf) return P .. 'idlewf:' .. svc .. ':' .. wf end
function K.idle_customer(P, svc, c) return P .. 'idlec:' .. svc .. ':' .. c end
function K.wake(P, token) return P .. 'wake:' .. token end

-- Fleet records, events, counters.
function K.service_instance(P, sid) return P .. 'svc:' .. sid end
function K.service_instances(P) return P .. 'svcs' end
function K.machine(P, mid) return P .. 'machine:' .. mid end
function K.machines(P) return P .. 'machines' end
function K.events(P) return P .. 'events' end
function K.stats(P) return P .. 'stats' end
function K.cancel_channel(P) return P .. 'cancel' end
function K.guard(P, name) return P .. 'guard:' .. name end
-- Stall grace (_housekeeping.lua): the last heartbeat's note ("<ms>:<lease ms>:<judged>"), and the
-- stall being granted ("<wake ms>:<gap ms>", expiring with its grace).
function K.clock(P) return P .. 'clock' end
function K.stall(P) return P .. 'stall' end

-- Leadership (docs/upkeep.md): the lease of one role, and its fencing counter (no TTL: a token is
-- never handed out twice).
function K.leader(P, role) return P .. 'leader:' .. role end
function K.leader_token(P, role) return P .. 'leadertoken:' .. role end

-- Flows (docs/flows.md): a flow's record, and the children of a job that others wait on.
function K.flow(P, id) return P .. 'flow:' .. id end
function K.children(P, id) return P .. 'children:' .. id end
-- Flows on the dashboards (docs/watch.md): the flows not ended, by submit time ('flows' is not
-- 'flow:' + anything: a key has the ':' after 'flow').
function K.flows(P) return P .. 'flows' end

-- Recurring schedules (docs/schedules.md): one schedule's record, every schedule by name, and the
-- active (not paused) ones by their next occurrence (the upkeep leader fires the due ones). A name has
-- no ':' and 'schedule:' is not a prefix of 'schedules' or 'scheddue', so no key collides.
function K.schedule(P, name) return P .. 'schedule:' .. name end
function K.schedules(P) return P .. 'schedules' end
function K.schedules_due(P) return P .. 'scheddue' end
