"""One rate budget for every process calling the API with the same credentials.

The API counts requests per client in windows and says, on every answer, how many the
window allows (`X-RateLimit-Limit`), how many are left (`X-RateLimit-Remaining`) and when it
ends (`X-RateLimit-Reset`, epoch seconds). A worker reading that alone would learn of the
limit only from a 429, and every worker would. Here every process spends from one count in
Redis: `take()` asks a small script for slots (an eighth of those left, at least one, spent
before asking again), and waits for the window's end when none is left; after the answer
`settle()` folds in what the server said, when it teaches something (one script call).
A 429 pauses every process until the reset. The scripts read Redis' own clock (`TIME`), so
processes on hosts whose clocks disagree still agree with each other.

The count is the lower of the server's figure and ours, since ours also holds the requests
still on their way. When a window ends, a full one begins less the requests still in
flight, which the server may count in the new window. Nothing is known before the first
answer, so the first requests just go. A window whose slots are all taken while no answer
said when it ends (its requests went unanswered: the API down or out of reach) is assumed
to end one window length later (the longest time to a reset seen, a second before any):
the budget never holds "no slots" without a time at which that ends, or it would wait for
an answer that no request may go to fetch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

import httpx
import redis
from redis.commands.core import Script

from ..connection import ScriptRunner

log = logging.getLogger(__name__)

KEY_PREFIX = "tw:api:budget:"
KEY_TTL_SECONDS = 3600
# A window's slots are all taken and its end is not known yet: look again this soon.
UNKNOWN_END_POLL_MS = 50
# ... and assume it ends this long after its last slot was taken, until answers have shown
# how long the API's windows are (the time to a reset, the longest seen, at most the max).
ASSUMED_WINDOW_MS = 1000
MAX_WINDOW_MS = 60_000
# A request in flight longer than this is forgotten (its process died, or it timed out).
IN_FLIGHT_MAX_MS = 120_000
# A process takes this share of the slots left in a window at once (at least one), and
# spends them without asking Redis again: most calls cost no Redis round trip at all.
LEASE_SHARE = 8
# A request sent this close to its window's end may reach the server in the next window:
# it is tracked as in flight, so that the next window starts with its slot taken.
STRADDLE_SECONDS = 0.25

# KEYS: budget hash, in-flight set. ARGV: ticket, poll ms, in-flight max ms, lease share,
# window ms when none was learned. Returns {slots, ms}: slots > 0 is a lease of that many
# slots (the first one in flight for the ticket) usable for ms more (-1: for this request
# alone); 0 slots means wait ms.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call(
  'HMGET', KEYS[1], 'paused_until', 'reset', 'remaining', 'limit', 'ends', 'window')
local paused, reset = tonumber(s[1]) or 0, tonumber(s[2])
local remaining, limit = tonumber(s[3]), tonumber(s[4])
local ends, window = tonumber(s[5]), tonumber(s[6]) or tonumber(ARGV[5])
if paused > now then return {0, paused - now} end
local slots, valid = 1, -1
if remaining ~= nil then
  if (reset ~= nil and now >= reset * 1000) or (reset == nil and ends ~= nil and now >= ends) then
    -- The window is over (the server said when, or we assumed it): a new one, less what
    -- is still in flight.
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
    remaining = (limit or remaining) - redis.call('ZCARD', KEYS[2])
    redis.call('HDEL', KEYS[1], 'reset', 'ends')
    reset, ends = nil, nil
  end
  if remaining <= 0 then
    redis.call('HSET', KEYS[1], 'remaining', remaining)
    if reset ~= nil then return {0, reset * 1000 - now} end
    if ends == nil then
      -- No slot, and no answer told when the window ends: assume it ends one window
      -- from now, or the budget would wait for an answer that no request may fetch.
      ends = now + window
      redis.call('HSET', KEYS[1], 'ends', ends)
    end
    return {0, math.min(tonumber(ARGV[2]), ends - now)}
  end
  if reset ~= nil then
    slots = math.max(1, math.floor(remaining / tonumber(ARGV[4])))
    valid = reset * 1000 - now
  elseif remaining == 1 and ends == nil then
    redis.call('HSET', KEYS[1], 'ends', now + window)  -- the last slot: as above
  end
  redis.call('HSET', KEYS[1], 'remaining', remaining - slots)
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
return {slots, valid}
"""

# KEYS: in-flight set. ARGV: ticket. A request on a leased slot is on its way.
START = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
return 0
"""

# KEYS: budget hash, in-flight set. ARGV: ticket, status, limit, remaining, reset,
# retry-after ms ('' when absent), key ttl seconds, longest window ms.
SETTLE = """
redis.call('ZREM', KEYS[2], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local status, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local remaining, reset, retry_after = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if limit ~= nil then redis.call('HSET', KEYS[1], 'limit', limit) end
if status == 429 then
  local pause = now + 1000
  if reset ~= nil then pause = reset * 1000 end
  if retry_after ~= nil and (reset == nil or now + retry_after < pause) then
    pause = now + retry_after
  end
  local paused = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
  if pause > paused then redis.call('HSET', KEYS[1], 'paused_until', pause) end
  remaining = 0
end
if remaining ~= nil and reset ~= nil then
  local s = redis.call('HMGET', KEYS[1], 'reset', 'remaining')
  local known_reset, known = tonumber(s[1]), tonumber(s[2])
  if known_reset ~= nil and reset < known_reset then
    -- news of a window already over: nothing to learn
  elseif known == nil or (known_reset ~= nil and reset > known_reset) then
    redis.call('HSET', KEYS[1], 'reset', reset, 'remaining', remaining)
  else
    redis.call('HSET', KEYS[1], 'reset', reset, 'remaining', math.min(known, remaining))
  end
  redis.call('HDEL', KEYS[1], 'ends')  -- the end is known now
  -- The longest time to a reset seen so far: the window's length, as far as we know.
  local left = math.min(reset * 1000 - now, tonumber(ARGV[8]))
  if left > (tonumber(redis.call('HGET', KEYS[1], 'window')) or 0) then
    redis.call('HSET', KEYS[1], 'window', left)
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[7])
return 0
"""


class Budget:
    """The shared request budget of one API client identity."""

    def __init__(self, connection: redis.Redis, identity: str) -> None:
        self.keys = [KEY_PREFIX + identity, KEY_PREFIX + identity + ":in-flight"]
        # Each script is one EVALSHA whose reply is read before the call goes on: sending
        # `settle` without waiting for it saved too little to be worth its code.
        self._runner = ScriptRunner(connection)
        self._take = Script(connection, TAKE)
        self._start = Script(connection, START)
        self._settle = Script(connection, SETTLE)
        self._lock = threading.Lock()
        self._leased = 0  # slots taken from Redis and not spent yet
        self._lease_ends = 0.0  # time.monotonic() when they lapse with their window
        self._lease_pid = 0  # a forked child does not spend its parent's slots
        self._known_reset = ""  # the last window end told to Redis by this process

    def take(self, deadline: float) -> str | None:
        """Wait for a slot; its ticket for `settle()`, or None if no slot comes before
        `deadline` (time.monotonic())."""
        with self._lock:
            now = time.monotonic()
            leased = self._leased and self._lease_pid == os.getpid() and now < self._lease_ends
            if leased:
                self._leased -= 1
                straddles = self._lease_ends - now <= STRADDLE_SECONDS
        if leased:
            if not straddles:
                return ""  # lands well inside its window: nothing to track
            ticket = uuid.uuid4().hex  # may arrive in the next window: counted there
            # Outside the lock: the other threads' leased slots never wait on this round trip.
            self._runner.run(self._start, self.keys[1:], [ticket])
            return ticket
        ticket = uuid.uuid4().hex
        while True:
            args = [ticket, UNKNOWN_END_POLL_MS, IN_FLIGHT_MAX_MS, LEASE_SHARE, ASSUMED_WINDOW_MS]
            started = time.monotonic()
            slots, ms = (int(n) for n in self._runner.run(self._take, self.keys, args))
            if slots:
                if slots > 1:
                    with self._lock:
                        self._leased, self._lease_ends = slots - 1, started + ms / 1000
                        self._lease_pid = os.getpid()
                return ticket
            if time.monotonic() + ms / 1000 > deadline:
                return None
            time.sleep(ms / 1000)

    def settle(self, ticket: str, response: httpx.Response | None) -> None:
        """The request of `ticket` is over: fold in the server's rate-limit headers and a
        429 (`response` is None when no answer came). Skipped when it would teach the
        budget nothing: an untracked request, in a window already known, with more than a
        quarter of its requests left."""
        headers = response.headers if response is not None else {}
        status = response.status_code if response is not None else None
        limit, remaining = headers.get("X-RateLimit-Limit"), headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset", "")
        if not ticket and status != 429:
            plenty = limit and remaining and remaining.isdigit() and int(remaining) * 4 > int(limit)
            if (reset == self._known_reset and plenty) or not (limit and remaining):
                return
        self._known_reset = reset
        args = [
            ticket,
            status or "",
            limit or "",
            remaining or "",
            reset,
            _milliseconds(headers.get("Retry-After")),
            KEY_TTL_SECONDS,
            MAX_WINDOW_MS,
        ]
        if status == 429:
            with self._lock:
                self._leased = 0  # the server disagrees: nothing more without asking
            self._runner.run(self._settle, self.keys, args)  # its pause: before any retry
            return
        try:
            self._runner.run(self._settle, self.keys, args)
        except redis.RedisError as exc:
            # The call itself succeeded or failed on its own; a budget that cannot learn from
            # it stays as it was (its ticket runs out by itself) rather than fail the call.
            log.debug("rate budget: could not record an answer: %s", exc)


def _milliseconds(seconds: str | None) -> str:
    try:
        return str(int(float(seconds) * 1000)) if seconds else ""
    except ValueError:
        return ""
