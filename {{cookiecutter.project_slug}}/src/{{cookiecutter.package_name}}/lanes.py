"""Lanes: one event at a time per order, in arrival order, for the handlers that ask.

`@on("order.*", lane="order")` puts a handler in a lane per order (the key is
`data.object.id`; `lane=` a function of the event gives another key). A lane is one
handler and one key. It holds the events waiting for that handler and that key in the
order they reached the receiver, and lets the first of them run, on one worker, alone;
the next runs only once it succeeded. Different keys, and handlers without a lane, run
in parallel as before.

The state is in Redis, changed only by the Lua scripts below, which Redis runs without
interleaving: per lane a sorted set of the events waiting (scored by the order in which
they joined), a hash naming the run that holds the lane (its job, a fencing token and a
lease expiry), and the set of events parked until their turn.

- Joining in arrival order. The receiver queues events in arrival order and workers take
  them in that order, each into RQ's intermediate list of the queue, until the worker
  records the start. A job joins its lanes before it leaves that list, and first joins
  every job taken before it that has not joined yet (the worker reads those jobs and
  works out their lanes too). So whichever worker gets to Redis first, a lane's events
  join in the order they were taken, which is the order they arrived.
- Waiting without a worker. An event whose turn has not come is parked: its other
  handlers run at once, and the job is set aside (RQ's `deferred` status) for the lane
  handler. The run that finishes the lane's head puts the next event back at the front of
  its queue.
- Retries keep order: a head that fails stays the head until a retry succeeds. When its
  retries are used up the lane blocks (`TW_LANE_ON_FAILURE=block`, the default: a later
  transition is never applied over a missing one) until `failed retry` runs it again or
  `lanes skip` drops it; with `skip` the lane moves on by itself.
- A lost worker. The holding run renews its lease with the job's heartbeat. A worker that
  dies stops renewing; once the lease is older than `TW_WORKER_LOST_AFTER_SECONDS` the
  job comes back as abandoned (`worker.py`) and takes the lane with a new token. Only the
  run with the current token may release or renew it; a worker that finds its lease
  taken (it was frozen that long) stops at once rather than run beside the new holder.

The scripts move jobs between RQ's queues and registries and set their status themselves;
the key prefixes, fields and statuses of RQ's they use are those of `rq_compat.py`.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import redis
from rq.job import Job, JobStatus
from rq.queue import Queue

from . import rq_compat
from .connection import ScriptRunner
from .events import Event
from .routing import Handler, Routes
from .routing import routes as default_routes

log = logging.getLogger(__name__)

PREFIX = "tw:lane:"
# Every lane with events in it, and the blocked ones (lane -> unix seconds blocked since).
ALL_KEY = "tw:lanes"
BLOCKED_KEY = "tw:lanes:blocked"
# Set on a job's hash once its lanes are joined: a job ahead of another need not be read.
JOINED_FIELD = "tw_lanes"
ON_FAILURE = ("block", "skip")

# The handlers of the running job whose lane is not theirs yet: `jobs.handle_event` skips
# them. Set by the worker around each job.
PARKED: ContextVar[frozenset[str]] = ContextVar("parked_handlers", default=frozenset())

_COMMON = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local P, JOB = ARGV[1], ARGV[2]
local QUEUE, FINISHED, DEFERRED = ARGV[3], ARGV[4], ARGV[5]

-- Back to the front of its queue, whatever RQ recorded of its last run.
local function requeue(id)
  local key = JOB .. id
  local origin = redis.call('HGET', key, 'origin')
  if not origin then return end
  redis.call('PERSIST', key)
  redis.call('HSET', key, 'status', 'queued')
  redis.call('ZREM', FINISHED .. origin, id)
  redis.call('ZREM', DEFERRED .. origin, id)
  redis.call('LPUSH', QUEUE .. origin, id)
end

local function block(lane)
  redis.call('ZADD', KEYS[2], 'NX', math.floor(now / 1000), lane)
end

-- The lane's head is gone: hand the lane to the next event, waking it if parked.
local function advance(lane)
  local h = P .. lane
  redis.call('HDEL', h, 'holder', 'until', 'run')
  redis.call('ZREM', KEYS[2], lane)
  while true do
    local head = redis.call('ZRANGE', h .. ':q', 0, 0)[1]
    if not head then
      redis.call('DEL', h, h .. ':q', h .. ':parked')
      redis.call('SREM', KEYS[1], lane)
      return
    end
    local status = redis.call('HGET', JOB .. head, 'status')
    if not status then
      redis.call('ZREM', h .. ':q', head)  -- its job expired: nothing left to run
    else
      if redis.call('SREM', h .. ':parked', head) == 1 then
        if status == 'deferred' or status == 'finished' then
          requeue(head)
        elseif status == 'failed' or status == 'stopped' then
          block(lane)
        end
      end
      return
    end
  end
end
"""

# KEYS: all lanes, blocked lanes, the job's queue's intermediate list, the job's hash.
# ARGV: lane prefix, job prefix, queue prefix, finished and deferred registry prefixes,
#       the job id, lease ms, 1 when the job has nothing to run but lane handlers, then
#       JSON: {"lanes": [...], "done": [...], "known": {job id: [lanes]}, "specs": [...]},
#       then a nonce naming this run.
# Returns {'ahead', ids} when jobs taken earlier must be read first, {'held', ms} when an
# earlier run of the job holds a lane for ms more, else
# {'ok'|'parked', {lane, token, ...} claimed, {lane, ...} parked}.
ENTER = (
    _COMMON
    + """
local me, lease, parkable, run = ARGV[6], tonumber(ARGV[7]), ARGV[8] == '1', ARGV[10]
local plan = cjson.decode(ARGV[9])
local known = plan.known
-- The lanes of a job taken earlier, for handlers keyed by data.object.id (plan.specs:
-- handler, pattern, 'id' or 'fn'); nil when Python must say (a function key, odd data).
local function lanes_in(id)
  local ok, call = pcall(cjson.decode, redis.call('HGET', JOB .. id, 'data') or '')
  local envelope = ok and type(call) == 'table' and type(call[3]) == 'table' and call[3][1]
  if type(envelope) ~= 'table' or type(envelope.type) ~= 'string' then return nil end
  local kind, found, seen = envelope.type, {}, {}
  for _, spec in ipairs(plan.specs) do
    local pattern = spec[2]
    local family = string.sub(pattern, -2) == '.*' and string.sub(pattern, 1, -2)
    if pattern == '*' or pattern == kind or (family and string.sub(kind, 1, #family) == family) then
      local object = type(envelope.data) == 'table' and envelope.data.object
      local key = type(object) == 'table' and object.id
      if spec[3] ~= 'id' or type(key) ~= 'string' then return nil end
      local lane = spec[1] .. ':' .. key
      if key ~= '' and not seen[lane] then
        seen[lane] = true
        found[#found + 1] = lane
      end
    end
  end
  return found
end
local order, missing = {}, {}
local position = redis.call('LPOS', KEYS[3], me)
for _, id in ipairs(position and redis.call('LRANGE', KEYS[3], 0, position - 1) or {}) do
  if redis.call('HEXISTS', JOB .. id, 'tw_lanes') == 0 and redis.call('EXISTS', JOB .. id) == 1 then
    known[id] = known[id] or lanes_in(id)
    if known[id] then order[#order + 1] = id else missing[#missing + 1] = id end
  end
end
if #missing > 0 then return {'ahead', missing} end
known[me] = plan.lanes
order[#order + 1] = me
for _, id in ipairs(order) do
  for _, lane in ipairs(known[id]) do
    local h = P .. lane
    if not redis.call('ZSCORE', h .. ':q', id) then
      redis.call('ZADD', h .. ':q', redis.call('HINCRBY', h, 'seq', 1), id)
      redis.call('SADD', KEYS[1], lane)
    end
  end
  redis.call('HSET', JOB .. id, 'tw_lanes', '1')
end
-- A lane handler that already succeeded (its lane not released: the worker died) frees it.
for _, lane in ipairs(plan.done) do
  local h = P .. lane
  local head = redis.call('ZRANGE', h .. ':q', 0, 0)[1]
  redis.call('ZREM', h .. ':q', me)
  redis.call('SREM', h .. ':parked', me)
  if head == me then advance(lane) end
end
-- An earlier run of this job still holds one of its lanes (its worker was declared lost a
-- moment before the lease ran out): wait for the lease rather than run beside it. The same
-- run asking again (its reply was lost on the way) takes its lanes again.
for _, lane in ipairs(plan.lanes) do
  local held = redis.call('HMGET', P .. lane, 'holder', 'until', 'run')
  if held[1] == me and tonumber(held[2]) >= now and held[3] ~= run then
    return {'held', tonumber(held[2]) - now}
  end
end
local claimed, parked = {}, {}
for _, lane in ipairs(plan.lanes) do
  local h = P .. lane
  local head = redis.call('ZRANGE', h .. ':q', 0, 0)[1]
  local held = redis.call('HMGET', h, 'holder', 'until')
  if head == me and (not held[1] or held[1] == me or tonumber(held[2]) < now) then
    local token = redis.call('HINCRBY', h, 'token', 1)
    redis.call('HSET', h, 'holder', me, 'until', now + lease, 'run', run)
    redis.call('SREM', h .. ':parked', me)
    claimed[#claimed + 1] = lane
    claimed[#claimed + 1] = token
  else
    redis.call('SADD', h .. ':parked', me)
    parked[#parked + 1] = lane
  end
end
if #claimed == 0 and parkable then
  local origin = redis.call('HGET', KEYS[4], 'origin')
  redis.call('LREM', KEYS[3], 1, me)
  redis.call('HSET', KEYS[4], 'status', 'deferred')
  redis.call('ZADD', DEFERRED .. origin, math.floor(now / 1000), me)
  return {'parked', claimed, parked}
end
return {'ok', claimed, parked}
"""
)

# KEYS: all lanes, blocked lanes. ARGV: the five prefixes, the job id, on-failure mode,
# then JSON: {"done": [[lane, token]...], "failed": [[lane, token]...], "final": bool,
# "parked": [lanes], "finished": bool}.
# Returns the lanes whose lease this run had lost, then 1 when the job was requeued.
LEAVE = (
    _COMMON
    + """
local me, mode = ARGV[6], ARGV[7]
local plan = cjson.decode(ARGV[8])
local lost = {}
local function holds(lane, token)
  local held = redis.call('HMGET', P .. lane, 'holder', 'token')
  if held[1] == me and held[2] == tostring(token) then return true end
  lost[#lost + 1] = lane
  return false
end
for _, entry in ipairs(plan.done) do
  if holds(entry[1], entry[2]) then
    redis.call('ZREM', P .. entry[1] .. ':q', me)
    advance(entry[1])
  end
end
for _, entry in ipairs(plan.failed) do
  local lane = entry[1]
  if holds(lane, entry[2]) then
    redis.call('HDEL', P .. lane, 'holder', 'until', 'run')
    if plan.final and mode == 'skip' then
      redis.call('ZREM', P .. lane .. ':q', me)
      advance(lane)
    elseif plan.final then
      block(lane)
    end
  end
end
-- Parked lanes whose turn came while the job ran: run again now. Others stay parked.
local again, waiting = false, false
for _, lane in ipairs(plan.parked) do
  local h = P .. lane
  local head = redis.call('ZRANGE', h .. ':q', 0, 0)[1]
  local held = redis.call('HMGET', h, 'holder', 'until')
  local woken = redis.call('SISMEMBER', h .. ':parked', me) == 0
  if woken or (head == me and (not held[1] or tonumber(held[2]) < now)) then
    redis.call('SREM', h .. ':parked', me)
    if plan.final and head == me then block(lane) else again = true end
  else
    waiting = true
  end
end
-- Unless the run that woke it has put it back already, seeing RQ's 'finished' first.
if plan.finished and again then
  if redis.call('HGET', JOB .. me, 'status') ~= 'queued' then requeue(me) end
  return {lost, 1}
end
if plan.finished and waiting then
  local key = JOB .. me
  local origin = redis.call('HGET', key, 'origin')
  redis.call('PERSIST', key)
  redis.call('HSET', key, 'status', 'deferred')
  redis.call('ZREM', FINISHED .. origin, me)
  redis.call('ZADD', DEFERRED .. origin, math.floor(now / 1000), me)
end
return {lost, 0}
"""
)

# KEYS: none. ARGV: lane prefix, job id, lease ms, then lane, token, ...
# Returns the lanes whose lease the job no longer holds.
RENEW = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lost = {}
for i = 4, #ARGV, 2 do
  local h = ARGV[1] .. ARGV[i]
  local held = redis.call('HMGET', h, 'holder', 'token')
  if held[1] == ARGV[2] and held[2] == ARGV[i + 1] then
    redis.call('HSET', h, 'until', now + tonumber(ARGV[3]))
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""

# KEYS: all lanes, blocked lanes. ARGV: the five prefixes, the lane, 1 to skip even a head
# that is running. Returns the skipped head ('' when the lane is empty), or false when the
# head is running.
SKIP = (
    _COMMON
    + """
local lane = ARGV[6]
local h = P .. lane
local head = redis.call('ZRANGE', h .. ':q', 0, 0)[1]
if not head then return '' end
local held = redis.call('HMGET', h, 'holder', 'until')
if held[1] and tonumber(held[2]) >= now and ARGV[7] ~= '1' then return false end
redis.call('ZREM', h .. ':q', head)
redis.call('SREM', h .. ':parked', head)
advance(lane)
return head
"""
)


@dataclass
class Ticket:
    """What a job holds and waits for in its lanes during one run."""

    claimed: dict[str, tuple[str, int]] = field(default_factory=dict)  # lane -> handler, token
    parked: dict[str, str] = field(default_factory=dict)  # lane -> handler
    whole_job_parked: bool = False
    # An earlier run of the job holds a lane for this many ms more: ask again after reading
    # the job's memory afresh (that run may finish the handler).
    held_ms: int = 0

    @property
    def parked_handlers(self) -> frozenset[str]:
        return frozenset(self.parked.values())


def lane_key(handler: Handler, event: Event) -> str | None:
    """The key of `handler`'s lane for `event`: `data.object.id`, or what the handler's
    `lane=` function answers. None (no lane: the handler runs at once) when empty, or when
    the function raises (logged: a worker must not die of it)."""
    try:
        key = handler.lane(event) if callable(handler.lane) else event.object.get("id")
    except Exception:
        log.exception("%s %s: the lane key of %s failed", event.type, event.id, handler.name)
        return None
    return str(key) if key not in (None, "") else None


def lane_id(handler: Handler, key: str) -> str:
    return f"{handler.name}:{key}"


def lanes_of(handlers: Iterable[Handler], event: Event) -> dict[str, Handler]:
    """The lanes `event` joins among `handlers`: lane id -> handler."""
    found = {}
    for handler in handlers:
        if handler.lane is None:
            continue
        key = lane_key(handler, event)
        if key is None:
            log.warning("%s %s: no lane key for %s", event.type, event.id, handler.name)
            continue
        found[lane_id(handler, key)] = handler
    return found


def _prefixes() -> list[str]:
    """The scripts' first five arguments: the lanes' key prefix, then RQ's for jobs, queues,
    and the finished and deferred registries."""
    return [
        PREFIX,
        rq_compat.JOB_KEY_PREFIX,
        rq_compat.QUEUE_KEY_PREFIX,
        rq_compat.FINISHED_REGISTRY_PREFIX,
        rq_compat.DEFERRED_REGISTRY_PREFIX,
    ]


class Lanes:
    """The lane scripts on one connection, for one worker."""

    def __init__(
        self,
        connection: redis.Redis,
        lease_seconds: int,
        on_failure: str = "block",
        handlers: Routes = default_routes,
    ):
        self.connection = connection
        self.handlers = handlers
        self.lease_ms = lease_seconds * 1000
        self.on_failure = on_failure
        self.prefixes = _prefixes()
        # The per-job scripts take the web tier's fast path (one connection per thread).
        self._scripts = ScriptRunner(connection)
        self._enter = connection.register_script(ENTER)
        self._leave = connection.register_script(LEAVE)
        self._renew = connection.register_script(RENEW)

    def lanes_for(self, envelope: Any) -> dict[str, Handler]:
        """The lanes of an event: lane id -> handler (none for an envelope that does not
        parse: the job fails on it anyway)."""
        try:
            event = Event.from_dict(envelope)
        except Exception:
            return {}
        return lanes_of(self.handlers.handlers_for(event.type), event)

    def enter(self, job: Job, queue: Queue, done: Iterable[str]) -> Ticket | None:
        """Join the job's lanes (and those of the jobs taken before it), take the lanes whose
        turn it is, park it in the others. None, without a Redis call, for a job without a
        lane handler; `done` are the handlers that already succeeded for it."""
        specs = [
            [h.name, h.pattern, "fn" if callable(h.lane) else "id"]
            for h in self.handlers.lane_handlers()
        ]
        if not specs:
            return None  # no lane anywhere: not even the event is parsed again
        try:
            event = Event.from_dict(job.args[0])
        except Exception:
            return None  # the job fails on it anyway
        handlers = self.handlers.handlers_for(event.type)
        lanes = lanes_of(handlers, event)
        if not lanes:
            return None
        done = set(done)
        handler_names = [h.name for h in handlers if h.name not in done]
        pending = {lane: h for lane, h in lanes.items() if h.name not in done}
        finished = [lane for lane, h in lanes.items() if h.name in done]
        in_lanes = {h.name for h in pending.values()}
        parkable = bool(pending) and all(name in in_lanes for name in handler_names)
        known: dict[str, list[str]] = {}
        run = secrets.token_hex(8)
        while True:
            plan = {"lanes": list(pending), "done": finished, "known": known, "specs": specs}
            args = [
                *self.prefixes, job.id, self.lease_ms, 1 if parkable else 0,
                json.dumps(plan, separators=(",", ":")), run,
            ]  # fmt: skip
            keys = [ALL_KEY, BLOCKED_KEY, queue.intermediate_queue_key, job.key]
            answer = self._scripts.run(self._enter, keys, args)
            outcome = answer[0].decode()
            if outcome == "held":
                return Ticket(held_ms=int(answer[1]))
            if outcome != "ahead":
                break
            known.update(self._read_lanes([id_.decode() for id_ in answer[1]]))
        claimed_flat = [item.decode() if isinstance(item, bytes) else item for item in answer[1]]
        ticket = Ticket(whole_job_parked=outcome == "parked")
        for lane, token in zip(claimed_flat[::2], claimed_flat[1::2], strict=True):
            ticket.claimed[lane] = (pending[lane].name, int(token))
        for lane in answer[2]:
            lane = lane.decode()
            ticket.parked[lane] = pending[lane].name
        return ticket

    def _read_lanes(self, job_ids: list[str]) -> dict[str, list[str]]:
        """The lanes of jobs another worker took before ours and has not joined yet."""
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(Job.key_for(job_id), "data")
            datas = pipe.execute()
        known = {}
        for job_id, data in zip(job_ids, datas, strict=True):
            try:
                known[job_id] = list(self.lanes_for(rq_compat.envelope_of(data)))
            except Exception:  # not one of ours, or gone: it joins no lane
                known[job_id] = []
        return known

    def leave(self, job: Job, ticket: Ticket, done: Iterable[str]) -> bool:
        """After the run: release the lanes whose handler succeeded, keep (or on the last
        failure block or skip) the others, park the job for the lanes still waiting.
        Returns True when the job was put back on its queue for a lane whose turn came."""
        done = set(done)
        status = job.get_status(refresh=False)
        held = ticket.claimed.items()
        plan = {
            "done": [[lane, token] for lane, (name, token) in held if name in done],
            "failed": [[lane, token] for lane, (name, token) in held if name not in done],
            "final": status in (JobStatus.FAILED, JobStatus.STOPPED),
            "parked": list(ticket.parked),
            "finished": status == JobStatus.FINISHED,
        }  # fmt: skip
        args = [*self.prefixes, job.id, self.on_failure, json.dumps(plan, separators=(",", ":"))]
        lost, requeued = self._scripts.run(self._leave, [ALL_KEY, BLOCKED_KEY], args)
        lost = [lane.decode() for lane in lost]
        for lane in lost:
            log.error("job %s: lane %s was taken from this run (lease expired)", job.id, lane)
        if plan["final"] and plan["failed"]:
            names = ", ".join(lane for lane, _ in plan["failed"])
            action = "skipped" if self.on_failure == "skip" else "blocked until retried or skipped"
            log.error("job %s failed every retry heading lane(s) %s: %s", job.id, names, action)
        return bool(requeued)

    def renew(self, job: Job, ticket: Ticket) -> list[str]:
        """Extend the leases of the lanes the job holds; return those it lost."""
        args: list[Any] = [PREFIX, job.id, self.lease_ms]
        for lane, (_, token) in ticket.claimed.items():
            args += [lane, token]
        if len(args) == 3:
            return []
        return [lane.decode() for lane in self._renew(keys=[], args=args)]


def skip_head(connection: redis.Redis, lane: str, force: bool = False) -> str | None:
    """Drop the first event of `lane` and let the next run. Returns the event id skipped
    ('' for an empty lane), or None when the head is running (and not `force`)."""
    script = connection.register_script(SKIP)
    answer = script(keys=[ALL_KEY, BLOCKED_KEY], args=[*_prefixes(), lane, 1 if force else 0])
    if answer is None:
        return None
    return answer.decode() if isinstance(answer, bytes) else str(answer)


@dataclass(frozen=True)
class LaneInfo:
    lane: str
    handler: str
    key: str
    waiting: int  # events in the lane, the head included
    head: str
    holder: str | None  # the event running now, if any
    blocked_since: float | None  # unix seconds


def list_lanes(
    connection: redis.Redis, blocked_only: bool = False, limit: int = 100
) -> list[LaneInfo]:
    """Lanes with events waiting, blocked ones first (oldest first), then the longest."""
    blocked = dict(connection.zrange(BLOCKED_KEY, 0, -1, withscores=True))
    names = list(blocked) if blocked_only else list({*blocked, *connection.smembers(ALL_KEY)})
    now_ms = time.time() * 1000
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            lane = name.decode()
            pipe.zcard(f"{PREFIX}{lane}:q")
            pipe.zrange(f"{PREFIX}{lane}:q", 0, 0)
            pipe.hmget(f"{PREFIX}{lane}", "holder", "until")
        replies = pipe.execute()
    infos = []
    for i, name in enumerate(names):
        lane = name.decode()
        waiting, head, (holder, until) = replies[3 * i : 3 * i + 3]
        if not waiting:
            continue
        live = holder is not None and until is not None and float(until) >= now_ms
        handler, _, key = lane.partition(":")
        infos.append(
            LaneInfo(
                lane=lane,
                handler=handler,
                key=key,
                waiting=waiting,
                head=head[0].decode(),
                holder=holder.decode() if live else None,
                blocked_since=blocked.get(name),
            )
        )
    infos.sort(key=lambda i: (i.blocked_since is None, i.blocked_since or 0, -i.waiting))
    return infos[:limit]


def blocked_stats(connection: redis.Redis) -> tuple[int, float]:
    """How many lanes are blocked, and the oldest one's age in seconds (0 when none)."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.zcard(BLOCKED_KEY)
        pipe.zrange(BLOCKED_KEY, 0, 0, withscores=True)
        pipe.time()
        count, oldest, (seconds, micros) = pipe.execute()
    if not oldest:
        return count, 0.0
    return count, max(0.0, seconds + micros / 1e6 - oldest[0][1])
