"""One rate budget for every process calling the API with the same credentials.

The API counts requests per client in windows and says, on every answer, how many the
window allows (`X-RateLimit-Limit`), how many are left (`X-RateLimit-Remaining`) and when it
ends (`X-RateLimit-Reset`, epoch seconds). Each worker reading that alone would only learn
of the limit from a 429, once per worker. Here every process spends from one count kept in
Redis: before each request `take()` asks a small script for a slot and waits when none is
left until the window ends; after each answer `observe()` folds in what the server said;
a 429 pauses every process until the reset (or `Retry-After`). The scripts read Redis'
own clock (`TIME`), so hosts whose clocks disagree still agree on the window.

Before the first answer of a window nothing is known, and requests go out; from then on
the count is the lower of the server's figure and ours (ours includes requests still on
their way), so the processes together stay under the limit.
"""

from __future__ import annotations

import time

import httpx
import redis
from redis.commands.core import Script

from ..connection import ScriptRunner

KEY_PREFIX = "tw:api:budget:"
KEY_TTL_SECONDS = 3600
# A window's slots are all taken and its end is not known yet: look again this soon.
UNKNOWN_END_POLL_MS = 50

# KEYS: budget hash. Returns 0 (go: one slot taken) or the milliseconds to wait.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'paused_until', 'reset', 'remaining', 'limit')
local paused, reset = tonumber(s[1]) or 0, tonumber(s[2])
local remaining, limit = tonumber(s[3]), tonumber(s[4])
if paused > now then return paused - now end
if remaining == nil then return 0 end
if reset ~= nil and now >= reset * 1000 then
  -- The window the server spoke of is over: a full one begins, whose end we learn later.
  remaining = limit or remaining
  redis.call('HDEL', KEYS[1], 'reset')
  reset = nil
end
if remaining <= 0 then
  if reset ~= nil then return reset * 1000 - now end
  redis.call('HSET', KEYS[1], 'remaining', remaining)
  return tonumber(ARGV[1])
end
redis.call('HSET', KEYS[1], 'remaining', remaining - 1)
return 0
"""

# KEYS: budget hash. ARGV: status, limit, remaining, reset ('' when absent), retry-after ms.
OBSERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local status, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local remaining, reset, retry_after = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if limit ~= nil then redis.call('HSET', KEYS[1], 'limit', limit) end
if status == 429 then
  local pause = now + 1000
  if retry_after ~= nil then
    pause = now + retry_after
  elseif reset ~= nil then
    pause = reset * 1000
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
  elseif known_reset ~= nil and reset > known_reset or known == nil then
    redis.call('HSET', KEYS[1], 'reset', reset, 'remaining', remaining)
  else
    redis.call('HSET', KEYS[1], 'reset', reset, 'remaining', math.min(known, remaining))
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
return 0
"""


class Budget:
    """The shared request budget of one API client identity."""

    def __init__(self, connection: redis.Redis, identity: str) -> None:
        self.key = KEY_PREFIX + identity
        self._runner = ScriptRunner(connection)
        self._take = Script(connection, TAKE)
        self._observe = Script(connection, OBSERVE)

    def take(self, deadline: float) -> bool:
        """Wait for a slot; False if none comes before `deadline` (time.monotonic())."""
        while True:
            wait_ms = int(self._runner.run(self._take, [self.key], [UNKNOWN_END_POLL_MS]))
            if wait_ms <= 0:
                return True
            if time.monotonic() + wait_ms / 1000 > deadline:
                return False
            time.sleep(wait_ms / 1000)

    def observe(self, response: httpx.Response) -> None:
        """Fold the server's rate-limit headers (and a 429) into the shared budget."""
        headers = response.headers
        limit = headers.get("X-RateLimit-Limit", "")
        if not limit and response.status_code != 429:
            return  # an answer that says nothing about the budget
        retry_after = _milliseconds(headers.get("Retry-After"))
        args = [
            response.status_code,
            limit,
            headers.get("X-RateLimit-Remaining", ""),
            headers.get("X-RateLimit-Reset", ""),
            retry_after,
            KEY_TTL_SECONDS,
        ]
        self._runner.run(self._observe, [self.key], args)


def _milliseconds(seconds: str | None) -> str:
    try:
        return str(int(float(seconds) * 1000)) if seconds else ""
    except ValueError:
        return ""
