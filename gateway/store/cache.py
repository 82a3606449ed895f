"""The consent cache (I/O layer): versioned entries in Redis, or in-process for a single instance.

Every entry carries the consent row's ``version``. Writes are compare-and-set in one Lua
script: an entry is replaced only by one with a higher version, or by the real state of
the same version replacing that version's tombstone. Hence:

* before a change commits, the writer stores a *tombstone* with the new version; a reader
  that read Postgres before the commit can no longer write its older state back, and every
  gate treats a tombstone as "ask Postgres";
* after the commit, the writer stores the new state with the same version (carried by the
  next batch's tombstone call when one follows at once, see ``tombstone_many``);
* a failure anywhere leaves a tombstone or nothing, and both mean "ask Postgres": the
  cache can only ever err toward reading the truth (README, "How the invariants are kept").

Negative answers (no consent row: ``NO_CONSENT``, version 0) are never written to Redis.
A batch of a million numbers nobody has heard of would otherwise leave a million keys for
a day; instead each process may keep them in memory (``remember_absent``): the near cache
under the rule in near.py, the in-process cache bounded. Redis then holds one key per
consent row that was read or changed, which is what ``maxmemory`` is sized for (README,
"Deployment").

Keys hold a keyed BLAKE2b digest of the address, never the address itself.

Reads take at most half of the client's connection pool (``_READ_SHARE``) and wait for a
free one beyond that. The pool refuses a connection past its size ("Too many connections")
rather than wait, and the guard takes a refused read for Redis being unreachable: 500
concurrent checks of numbers the near cache did not hold each sent an ``MGET``, 400 of them
were refused, and every refusal dropped the cache's trust. The other half of the pool stays
for the writer's tombstones, whose failure sends every instance to Postgres until repaired
(docs/DESIGN.md, invariant 2).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keywords.model import ConsentState

_STATE_CODE = {
    ConsentState.NONE: "n",
    ConsentState.PENDING: "p",
    ConsentState.OPTED_IN: "i",
    ConsentState.OPTED_OUT: "o",
}
_CODE_STATE = {code: state for state, code in _STATE_CODE.items()}
_TOMBSTONE = "t"
_CHUNK = 1_000  # keys per CAS script call
_MGET_CHUNK = 10_000
_READ_SHARE = 2  # reads use at most 1/_READ_SHARE of the pool's connections ...
_MAX_READS = 32  # ... and never more than this many at once (one thread serves them all)

# KEYS: the entries; ARGV[1], ARGV[2]: TTL of a state and of a tombstone; ARGV[3], ARGV[4]:
# the invalidation sequence key and channel ("" to not announce); then per key its value
# "c|version|since". A value is stored only when no newer version is there, and a tombstone
# never replaces the real state of its own version. An announced write takes the next
# sequence number and publishes it with the keys, atomically (see near.py).
_CAS_SCRIPT = """
local ttl_state, ttl_tomb, seq_key, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local seq = 0
if channel ~= '' then
  seq = redis.call('INCR', seq_key)
  redis.call('PUBLISH', channel, seq .. ' ' .. table.concat(KEYS, ' '))
end
for i, key in ipairs(KEYS) do
  local value = ARGV[i + 4]
  local sep = string.find(value, '|', 3, true)
  local version = tonumber(string.sub(value, 3, sep - 1))
  local is_tomb = string.sub(value, 1, 1) == 't'
  local current = redis.call('GET', key)
  local write = true
  if current then
    local csep = string.find(current, '|', 3, true)
    local cversion = tonumber(string.sub(current, 3, csep - 1))
    if cversion > version then
      write = false
    elseif cversion == version and is_tomb and string.sub(current, 1, 1) ~= 't' then
      write = false
    end
  end
  if write then
    redis.call('SET', key, value, 'EX', is_tomb and ttl_tomb or ttl_state)
  end
end
return seq
"""


class CacheUnavailable(Exception):
    """Redis could not be read or written; callers fall back to Postgres."""


@dataclass(frozen=True, slots=True)
class ConsentKey:
    """What the gate asks about: one address, sender, program and channel."""

    channel: str
    sender: str
    program: str
    address: str  # normalized (E.164 / canonical email)


@dataclass(frozen=True, slots=True)
class CachedConsent:
    """A cached consent row; ``since`` is the row's ``updated_at`` as a UNIX time."""

    state: ConsentState
    version: int
    since: float | None = None


# Postgres has no consent row for the key: nothing to send on. One object for every such
# answer, so caches and the gate's memo hold a single instance.
NO_CONSENT = CachedConsent(ConsentState.NONE, 0, None)


class ConsentCache(Protocol):
    """What the writer and the gate need from a cache."""

    async def get_scope(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> list[CachedConsent | None]:
        """Cached states of ``addresses`` for one scope; ``None`` for a miss or a tombstone."""

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        """Store states, each only if no newer version is cached."""

    def remember_absent(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> None:
        """Postgres found no consent row for ``addresses`` after ``get_scope`` missed them:
        keep that in this process where it is safe to, never in Redis."""

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        """Mark keys as changing to the given version: readers go to Postgres.

        ``settled`` are committed states stored in the same call, as ``put_many`` would:
        the writer's post-commit fill rides on the next batch's tombstones.
        """

    async def ping(self) -> None:
        """Raise ``CacheUnavailable`` unless the cache answers."""

    def forget_local(self) -> None:
        """Drop any copy held in this process (the guard calls it when trust is lost)."""

    async def close(self) -> None:
        """Release connections."""


def _encode(entry: CachedConsent) -> str:
    since = "" if entry.since is None else f"{entry.since:.6f}"
    return f"{_STATE_CODE[entry.state]}|{entry.version}|{since}"


def decode(raw: bytes | str) -> CachedConsent | None:
    """A stored value; ``None`` for a tombstone (ask Postgres)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    code = text[0]
    if code == _TOMBSTONE:
        return None
    _, version, since = text.split("|", 2)
    return CachedConsent(_CODE_STATE[code], int(version), float(since) if since else None)


class RedisConsentCache:
    """The cache shared by every instance."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        secret: bytes,
        prefix: str,
        entry_ttl: int,
        tombstone_ttl: int,
    ) -> None:
        self._redis = client
        # BLAKE2b keys are at most 64 bytes; derive one from the gateway secret.
        self._key = hashlib.blake2b(secret, digest_size=32, person=b"cache-keys").digest()
        self._prefix = prefix
        self._ttls = (entry_ttl, tombstone_ttl)
        self._cas = client.register_script(_CAS_SCRIPT)
        pool_size = int(client.connection_pool.max_connections)
        self._reads = asyncio.Semaphore(max(1, min(pool_size // _READ_SHARE, _MAX_READS)))

    def redis_key(self, key: ConsentKey) -> str:
        """The Redis key for ``key``: a keyed digest stands in for the address."""
        digest = hashlib.blake2b(key.address.encode(), key=self._key, digest_size=16).hexdigest()
        return f"{self._prefix}:c:{key.channel}:{key.sender}:{key.program}:{digest}"

    @property
    def client(self) -> aioredis.Redis:
        """The Redis client (the near cache subscribes with it)."""
        return self._redis

    @property
    def seq_key(self) -> str:
        """The invalidation sequence counter."""
        return f"{self._prefix}:seq"

    @property
    def channel(self) -> str:
        """The invalidation channel."""
        return f"{self._prefix}:inv"

    def keys_for(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> list[str]:
        """Redis keys for ``addresses`` in one scope (the batch gate's hot path)."""
        head = f"{self._prefix}:c:{channel}:{sender}:{program}:"
        key, blake = self._key, hashlib.blake2b
        return [head + blake(a.encode(), key=key, digest_size=16).hexdigest() for a in addresses]

    async def mget_raw(self, keys: Sequence[str]) -> list[bytes | str | None]:
        """MGET in chunks, undecoded (``None``: no such key; see ``decode``); raise
        ``CacheUnavailable`` on any Redis error."""
        out: list[bytes | str | None] = []
        try:
            async with self._reads:  # see the module docstring
                for start in range(0, len(keys), _MGET_CHUNK):
                    out.extend(await self._redis.mget(keys[start : start + _MGET_CHUNK]))
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc
        return out

    async def mget_keys(self, keys: Sequence[str]) -> list[CachedConsent | None]:
        """MGET in chunks, decoded: ``None`` for a missing key and for a tombstone."""
        return [None if raw is None else decode(raw) for raw in await self.mget_raw(keys)]

    async def get_scope(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> list[CachedConsent | None]:
        """Cached states of one scope, straight from Redis."""
        return await self.mget_keys(self.keys_for(channel, sender, program, addresses))

    async def _write(self, keys: list[str], values: list[str], *, announce: bool) -> None:
        announcement = [self.seq_key, self.channel] if announce else ["", ""]
        try:
            for start in range(0, len(keys), _CHUNK):
                await self._cas(
                    keys=keys[start : start + _CHUNK],
                    args=[*self._ttls, *announcement, *values[start : start + _CHUNK]],
                )
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        """Compare-and-set each entry by version."""
        keys = [self.redis_key(k) for k, _ in entries]
        await self._write(keys, [_encode(v) for _, v in entries], announce=False)

    def remember_absent(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> None:
        """Nothing: a negative answer never takes a Redis key (see the module docstring)."""

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        """Write a tombstone carrying the coming version for each key, after ``settled``.

        One script call for both: the states and the tombstones are compare-and-set by
        version alike, so a key in both ends as the newer of the two, in either order.
        """
        keys = [self.redis_key(k) for k, _ in settled]
        keys += [self.redis_key(k) for k, _ in entries]
        values = [_encode(v) for _, v in settled]
        values += [f"t|{version}|" for _, version in entries]
        # Announced: every near cache drops these keys before the change can commit (the
        # settled keys too, which it dropped already when they were tombstoned: harmless).
        await self._write(keys, values, announce=bool(entries))

    async def ping(self) -> None:
        """Round trip to Redis."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(str(exc)) from exc

    def forget_local(self) -> None:
        """Nothing is held in this process."""

    async def close(self) -> None:
        """Close the client's connections."""
        await self._redis.aclose()


class LocalConsentCache:
    """In-process cache for a single instance run without Redis; same versioning rules.

    Negative answers are kept apart, at most ``max_absent`` of them (emptied when full):
    dropping one loses nothing a compare-and-set needs, since version 0 is below every
    real one, whereas the states and tombstones are kept for their versions.
    """

    def __init__(self, *, entry_ttl: int, max_absent: int = 500_000) -> None:
        self._entries: dict[ConsentKey, tuple[CachedConsent | None, int, float]] = {}
        self._absent: dict[ConsentKey, float] = {}  # key -> expiry
        self._ttl = entry_ttl
        self._max_absent = max_absent

    async def get_scope(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> list[CachedConsent | None]:
        """Entries that exist, are not tombstones and have not expired."""
        now = time.monotonic()
        out: list[CachedConsent | None] = []
        for address in addresses:
            key = ConsentKey(channel, sender, program, address)
            found = self._entries.get(key)
            if found is not None:
                out.append(found[0] if found[2] > now else None)
                continue
            expiry = self._absent.get(key)
            out.append(NO_CONSENT if expiry is not None and expiry > now else None)
        return out

    def remember_absent(
        self, channel: str, sender: str, program: str, addresses: Sequence[str]
    ) -> None:
        """Keep the negative answers of keys that no state or tombstone was ever stored for.

        Every change in this process tombstones its key here before it commits, so a key
        with no entry had no change since this process started, and Postgres's answer for
        it is still the truth; a key with one is left to its versions.
        """
        if len(self._absent) + len(addresses) > self._max_absent:
            self._absent.clear()
        expiry = time.monotonic() + self._ttl
        entries, absent = self._entries, self._absent
        for address in addresses[: self._max_absent]:
            key = ConsentKey(channel, sender, program, address)
            if key not in entries:
                absent[key] = expiry

    def _cas(self, key: ConsentKey, entry: CachedConsent | None, version: int) -> None:
        self._absent.pop(key, None)
        current = self._entries.get(key)
        if current is not None:
            if current[1] > version:
                return
            if current[1] == version and entry is None and current[0] is not None:
                return
        self._entries[key] = (entry, version, time.monotonic() + self._ttl)

    async def put_many(self, entries: Sequence[tuple[ConsentKey, CachedConsent]]) -> None:
        """Compare-and-set each entry by version."""
        for key, entry in entries:
            self._cas(key, entry, entry.version)

    async def tombstone_many(
        self,
        entries: Sequence[tuple[ConsentKey, int]],
        settled: Sequence[tuple[ConsentKey, CachedConsent]] = (),
    ) -> None:
        """Store ``settled``, then record the coming versions as tombstones."""
        await self.put_many(settled)
        for key, version in entries:
            self._cas(key, None, version)

    async def ping(self) -> None:
        """Always answers: it lives in this process."""

    def forget_local(self) -> None:
        """Kept: this cache is the only copy and every change goes through it."""

    async def close(self) -> None:
        """Nothing to release."""
