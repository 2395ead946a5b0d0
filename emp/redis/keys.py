"""Every Redis key name emp uses, one function each (the Lua twin is the table K in functions/_keys.lua).

All keys live under one hash tag, ``{<namespace>}:``, so every Function call is valid on Redis
Cluster and several namespaces can share one Redis. The schema is in docs/internals.md.
tests/redis/test_keys.py holds every Lua builder against the method (or property) of the same name
here: a key added on one side only fails it.
"""

from __future__ import annotations


class Keys:
    """Key builder for one namespace."""

    def __init__(self, namespace: str) -> None:
        if not namespace or any(c in namespace for c in "{}: \t\n"):
            raise ValueError(f"bad namespace {namespace!r}: no braces, colons or spaces")
        self.namespace = namespace
        self.prefix = "{" + namespace + "}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    # Payload and events keys have prefixes of their own: a job id may contain ':', and
    # "job:a:payload" must never be both job "a"'s payload and job "a:payload"'s hash.
    def payload(self, job_id: str) -> str:
        return f"{self.prefix}payload:{job_id}"

    def job_events(self, job_id: str) -> str:
        return f"{self.prefix}jobevents:{job_id}"

    @property
    def seq(self) -> str:
        """INCR counter: submission order (the tie-break of equal scores)."""
        return f"{self.prefix}seq"

    def queue(self, service: str, sig: str) -> str:
        return f"{self.prefix}q:{service}:{sig}"

    def unworkable_queue(self, service: str, sig: str) -> str:
        """Jobs of a signature judged unworkable (same members and scores as its queue)."""
        return f"{self.prefix}uq:{service}:{sig}"

    def workflow_queue(self, service: str, workflow_id: str) -> str:
        """Secondary index of pending jobs by workflow (for workers restricted to one workflow)."""
        return f"{self.prefix}qwf:{service}:{workflow_id}"

    def customer_queue(self, service: str, customer_id: str) -> str:
        """Secondary index of pending jobs by customer (for workers with an allowed-customers list)."""
        return f"{self.prefix}qc:{service}:{customer_id}"

    def heads(self, service: str) -> str:
        return f"{self.prefix}heads:{service}"

    def classes(self, service: str) -> str:
        """hash: capability classes whose claim index exists for this service -> their caps JSON."""
        return f"{self.prefix}mcls:{service}"

    def sig_classes(self, service: str) -> str:
        """hash: judged signature -> the indexed classes that match it (' c1 c2', '' for none)."""
        return f"{self.prefix}hcls:{service}"

    def class_heads(self, service: str, cls: str) -> str:
        """zset: the heads (as in heads:<svc>) of the signatures one capability class matches."""
        return f"{self.prefix}mheads:{service}:{cls}"

    def sigs(self, service: str) -> str:
        return f"{self.prefix}sigs:{service}"

    def usigs(self, service: str) -> str:
        return f"{self.prefix}usigs:{service}"

    def empty_sigs(self, service: str) -> str:
        """zset: live signature -> when its queue was first seen empty (retired after a grace)."""
        return f"{self.prefix}esigs:{service}"

    @property
    def sig_scan(self) -> str:
        """hash: the signature retirement walk's HSCAN cursor per service (``u:<service>`` for usigs)."""
        return f"{self.prefix}sigscan"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}worker:{worker_id}"

    def worker_matches(self, worker_id: str) -> str:
        """A worker's match cache: sig -> "1"/"0" (dropped when it registers again)."""
        return f"{self.prefix}wm:{worker_id}"

    def class_workers(self, cls: str) -> str:
        """set: live worker ids of one capability class (its claim indexes are dropped when empty)."""
        return f"{self.prefix}cw:{cls}"

    def wake(self, token: str) -> str:
        return f"{self.prefix}wake:{token}"

    def idle(self, service: str) -> str:
        return f"{self.prefix}idle:{service}"

    def idle_sig(self, service: str, sig: str) -> str:
        """zset: idle unrestricted workers that match this signature -> idle deadline ms (who a job wakes)."""
        return f"{self.prefix}idle:{service}:{sig}"

    def idle_workflow(self, service: str, workflow_id: str) -> str:
        """zset: idle workers restricted to this workflow -> idle deadline ms."""
        return f"{self.prefix}idlewf:{service}:{workflow_id}"

    def idle_customer(self, service: str, customer_id: str) -> str:
        """zset: idle workers whose allowed-customers list names this customer -> idle deadline ms."""
        return f"{self.prefix}idlec:{service}:{customer_id}"

    def done(self, status: str) -> str:
        return f"{self.prefix}done:{status}"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def leases(self) -> str:
        return f"{self.prefix}leases"

    @property
    def scheduled(self) -> str:
        return f"{self.prefix}scheduled"

    @property
    def waiting(self) -> str:
        """Flow steps waiting for their parents (zset: id -> submit time): counted and listed from here."""
        return f"{self.prefix}waiting"

    @property
    def unworkable(self) -> str:
        return f"{self.prefix}unworkable"

    @property
    def services(self) -> str:
        return f"{self.prefix}services"

    def machine(self, machine_id: str) -> str:
        """A machine agent's record (emp_machine_report / emp_machine_event); expires with its reports."""
        return f"{self.prefix}machine:{machine_id}"

    @property
    def machines(self) -> str:
        """zset: machine id -> expiry of its last report (live machines)."""
        return f"{self.prefix}machines"

    def service_instance(self, service_id: str) -> str:
        """A running service's status record (emp_service_status); expires with its reports."""
        return f"{self.prefix}svc:{service_id}"

    @property
    def service_instances(self) -> str:
        """zset: service id -> expiry of its last report (the fleet-wide services view)."""
        return f"{self.prefix}svcs"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel on which emp_cancel announces a running job's cancellation."""
        return f"{self.prefix}cancel"

    def guard(self, name: str) -> str:
        return f"{self.prefix}guard:{name}"

    # Stall grace (functions/_housekeeping.lua, docs/reliability.md "Redis frozen").
    @property
    def clock(self) -> str:
        """The last heartbeat's note ``"<ms>:<lease ms>:<judged 0|1>"``: a long silence after it is a stall."""
        return f"{self.prefix}clock"

    @property
    def stall(self) -> str:
        """The stall being granted, ``"<wake ms>:<gap ms>"``; expires when its grace is over."""
        return f"{self.prefix}stall"

    # Leadership (emp/coordinator/leader.py, docs/upkeep.md): the lease of one role and its fencing
    # counter. The counter outlives every lease (it has no TTL), so a token is never handed out twice.
    def leader(self, role: str) -> str:
        """hash: the leader lease of ``role`` {holder, token, expires, since}; expires with the lease."""
        return f"{self.prefix}leader:{role}"

    def leader_token(self, role: str) -> str:
        """INCR counter: the fencing token of ``role``, one more on every acquisition of its lease."""
        return f"{self.prefix}leadertoken:{role}"

    # Flows (docs/flows.md): a flow's record, and the children of a job that others wait on.
    def flow(self, flow_id: str) -> str:
        """hash: a flow {id, created_at, priority, steps (JSON), open}; expires once every step ended."""
        return f"{self.prefix}flow:{flow_id}"

    def children(self, job_id: str) -> str:
        """set: the ids of the jobs waiting on this job (--after, depends_on); expires with it."""
        return f"{self.prefix}children:{job_id}"

    # Flows on the dashboards (docs/watch.md): the flows not ended, for emp_flows_active.
    @property
    def flows(self) -> str:
        """zset: the id of every flow with a step not ended -> its submit time (ms); left when its last step ends."""
        return f"{self.prefix}flows"

    # Recurring schedules (docs/schedules.md): a schedule's record, every schedule, the due index.
    def schedule(self, name: str) -> str:
        """hash: a schedule {name, kind, cron, tz, every_ms, missed, template, next_ms, last_fired, ...}."""
        return f"{self.prefix}schedule:{name}"

    @property
    def schedules(self) -> str:
        """zset: every schedule's name -> when it was added (ms): the listing."""
        return f"{self.prefix}schedules"

    @property
    def schedules_due(self) -> str:
        """zset: active (not paused) schedule name -> its next occurrence (ms): what upkeep fires."""
        return f"{self.prefix}scheddue"
