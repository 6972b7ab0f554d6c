"""Fault injection for the simulator: latency, 5xx, dropped connections, scripted faults, throttling.

`world.faults` holds one `Faults` object (created on first use). Its JSON form is what the admin API
serves at `GET|PUT /_sim/faults`:

    {
      "seed": 0,
      "latency_ms": [min, max],          # uniform added latency per request ([0, 0] = none)
      "error_rate": 0.0,                 # share of requests answered with `error_status`
      "error_status": 503,
      "drop_rate": 0.0,                  # share of requests whose connection is cut mid-response
      "include_entra": false,            # apply the random faults to Entra / Microsoft Graph too
      "throttle": null | {               # TSTU budgets per caller identity (off when null)
        "budget": 200, "window_seconds": 300,
        "delay_band": 0.5,               # usage in (budget, budget*(1+band)] is delayed, beyond → 429
        "max_delay_seconds": 0.5,        # delay at the top of the band (the real service: up to 30 s)
        "cost": 1, "list_cost": 1,       # TSTUs per request; list endpoints (no id after the collection)
        "costs": {"regex": n}            # per-path overrides, first match wins
      },
      "rules": [                         # scripted one-shot faults, first match wins
        {"path": "regex", "method": null, "count": 1,
         "status": 503 | null, "drop": false, "delay_ms": 0, "headers": {}, "body": null,
         "content_type": null,           # with status: the body (a string) sent as is with this type
         "mutate": null}                 # the real JSON answer, altered (see below)
      ]
    }

`mutate` lets the route answer and then damages its JSON body (content length fixed up), as a
broken proxy or a service bug would: `{"remove_keys": ["value"]}` drops top-level keys,
`{"set": {"value": "x"}}` replaces them, `{"drop_item": {"list": "value", "index": 0}}` drops one
list item, `{"set_item": {"list": "value", "index": 0, "key": "descriptor", "value": 5}}` changes one
field of one item, `{"duplicate_item": {"list": "value", "index": 0}}` repeats one item at the end of
the list (as a list read while it changes may give an item twice).

Rule `path` regexes are searched in the *internal* path (after host mapping, keywords lowercased):
`https://vssps.dev.azure.com/fabrikam/_apis/Graph/Users` is `/vssps/fabrikam/_apis/graph/users`.
Random faults (latency, errors, drops, throttling) hit Azure DevOps routes only, unless
`include_entra`; rules hit anything but the admin API (`/_sim/` is never faulted).

Everything random comes from one `random.Random(seed)` so tests are deterministic. Throttle windows
run on the world's clock, so `POST /_sim/clock/advance` drains them (and `X-RateLimit-Reset` is
simulated epoch time: clients should wait for `Retry-After`, as the real service advises).
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.types import Send

from .state import World

RESOURCE = "ATCPU"  # what the real service names in X-RateLimit-Resource / TF400733
NAMESPACE = "User"


@dataclass(slots=True)
class Throttle:
    budget: float = 200.0
    window_seconds: float = 300.0
    delay_band: float = 0.5
    max_delay_seconds: float = 0.5
    cost: float = 1.0
    list_cost: float = 1.0
    costs: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Throttle:
        t = cls()
        for k in ("budget", "window_seconds", "delay_band", "max_delay_seconds", "cost", "list_cost"):
            if k in d and d[k] is not None:
                setattr(t, k, float(d[k]))
        t.costs = {str(k): float(v) for k, v in (d.get("costs") or {}).items()}
        if t.budget <= 0 or t.window_seconds <= 0 or t.delay_band < 0:
            raise ValueError("throttle budget and window must be positive, delay_band >= 0")
        return t

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "window_seconds": self.window_seconds,
                "delay_band": self.delay_band, "max_delay_seconds": self.max_delay_seconds,
                "cost": self.cost, "list_cost": self.list_cost, "costs": dict(self.costs)}


@dataclass(slots=True)
class Rule:
    path: str
    method: str | None = None
    count: int = 1  # how many more requests this rule hits; < 0 = forever
    status: int | None = None
    drop: bool = False
    delay_ms: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str | None = None
    mutate: dict[str, Any] | None = None
    hits: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rule:
        if "path" not in d:
            raise ValueError("a fault rule needs 'path' (a regular expression)")
        try:
            re.compile(d["path"])
        except re.error as e:
            raise ValueError(f"bad path regex {d['path']!r}: {e}") from None
        r = cls(path=d["path"], method=(d.get("method") or None), count=int(d.get("count", 1)),
                status=d.get("status"), drop=bool(d.get("drop", False)),
                delay_ms=float(d.get("delay_ms", 0) or 0), headers=dict(d.get("headers") or {}),
                body=d.get("body"), content_type=d.get("content_type") or None, mutate=d.get("mutate") or None)
        if r.status is None and not r.drop and not r.delay_ms and not r.mutate and not r.headers:
            raise ValueError("a fault rule needs one of 'status', 'drop', 'delay_ms', 'headers' or 'mutate'")
        if r.content_type is not None and not isinstance(r.body, str):
            raise ValueError("'content_type' needs a string 'body' (sent as is)")
        if r.mutate is not None and (not isinstance(r.mutate, dict)
                                     or set(r.mutate) - {"remove_keys", "set", "drop_item", "set_item",
                                                         "duplicate_item"}):
            raise ValueError("'mutate' takes remove_keys, set, drop_item, set_item and duplicate_item")
        return r

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "method": self.method, "count": self.count, "status": self.status,
                "drop": self.drop, "delay_ms": self.delay_ms, "headers": dict(self.headers),
                "body": self.body, "content_type": self.content_type, "mutate": self.mutate, "hits": self.hits}

    def matches(self, method: str, path: str) -> bool:
        if self.count == 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return re.search(self.path, path) is not None


@dataclass(slots=True)
class Decision:
    """What the fault layer does with one request."""

    delay: float = 0.0
    status: int | None = None  # answer this status instead of calling the app
    drop: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # added to whatever response goes out
    body: Any = None
    content_type: str | None = None  # send `body` as is with this content type
    mutate: dict[str, Any] | None = None  # alter the route's JSON answer (apply_mutation)
    throttled: bool = False  # the status is a throttle block (429)


class Faults:
    """Fault configuration plus the mutable state it needs (rng, rule counters, TSTU windows)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(config or {})

    # ---- configuration -----------------------------------------------------------------
    def configure(self, config: dict[str, Any]) -> None:
        """Replace the whole configuration (validates first; resets rng, rules and windows)."""
        lat = config.get("latency_ms") or [0, 0]
        if isinstance(lat, int | float):
            lat = [lat, lat]
        lo, hi = float(lat[0]), float(lat[1] if len(lat) > 1 else lat[0])
        if lo < 0 or hi < lo:
            raise ValueError("latency_ms must be [min, max] with 0 <= min <= max")
        rates = {k: float(config.get(k, 0) or 0) for k in ("error_rate", "drop_rate")}
        for k, v in rates.items():
            if not 0 <= v <= 1:
                raise ValueError(f"{k} must be between 0 and 1")
        status = int(config.get("error_status", 503))
        if not 500 <= status <= 599:
            raise ValueError("error_status must be a 5xx status")
        throttle = Throttle.from_json(config["throttle"]) if config.get("throttle") else None
        rules = [Rule.from_json(r) for r in config.get("rules") or []]
        with self._lock:
            self.seed = int(config.get("seed", 0))
            self.rng = random.Random(self.seed)
            self.latency_ms = (lo, hi)
            self.error_rate = rates["error_rate"]
            self.drop_rate = rates["drop_rate"]
            self.error_status = status
            self.include_entra = bool(config.get("include_entra", False))
            self.throttle = throttle
            self.rules = rules
            self.usage: dict[str, deque[tuple[float, float]]] = {}

    def add_rule(self, rule: dict[str, Any]) -> None:
        r = Rule.from_json(rule)
        with self._lock:
            self.rules.append(r)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"seed": self.seed, "latency_ms": list(self.latency_ms),
                    "error_rate": self.error_rate, "error_status": self.error_status,
                    "drop_rate": self.drop_rate, "include_entra": self.include_entra,
                    "throttle": self.throttle.to_json() if self.throttle else None,
                    "rules": [r.to_json() for r in self.rules]}

    @property
    def active(self) -> bool:
        return bool(self.latency_ms[1] or self.error_rate or self.drop_rate or self.throttle
                    or self.rules)

    # ---- per request -------------------------------------------------------------------
    def usage_of(self, identity: str, now: float) -> float:
        with self._lock:
            return self._usage(identity, now)

    def usage_snapshot(self, now: float) -> dict[str, float]:
        """TSTUs used in the current window, per identity (empty when throttling is off)."""
        with self._lock:
            if self.throttle is None:
                return {}
            return {k: self._usage(k, now) for k in list(self.usage)}

    def _usage(self, identity: str, now: float) -> float:
        assert self.throttle is not None
        q = self.usage.get(identity)
        if not q:
            return 0.0
        while q and q[0][0] <= now - self.throttle.window_seconds:
            q.popleft()
        return sum(c for _, c in q)

    def _cost(self, path: str) -> float:
        assert self.throttle is not None
        for rx, c in self.throttle.costs.items():
            if re.search(rx, path):
                return c
        return self.throttle.list_cost if _is_list(path) else self.throttle.cost

    def decide(self, method: str, path: str, *, identity: str, now: float, random_ok: bool) -> Decision:
        """Decide the fate of one request. `now` is the world clock (epoch seconds)."""
        d = Decision()
        with self._lock:
            for r in self.rules:
                if r.matches(method, path):
                    if r.count > 0:
                        r.count -= 1
                    r.hits += 1
                    d.delay += r.delay_ms / 1000
                    d.headers.update(r.headers)
                    if r.drop:
                        d.drop = True
                    elif r.status is not None:
                        d.status, d.body, d.content_type = int(r.status), r.body, r.content_type
                    d.mutate = r.mutate
                    return d
            if not random_ok:
                return d
            lo, hi = self.latency_ms
            if hi > 0:
                d.delay += (lo if lo == hi else self.rng.uniform(lo, hi)) / 1000
            # draw both numbers every time so one setting does not shift the other's sequence
            e, x = self.rng.random(), self.rng.random()
            if self.throttle is not None:
                self._throttle(d, path, identity, now)
                if d.status is not None:
                    return d
            if e < self.error_rate:
                d.status = self.error_status
            elif x < self.drop_rate:
                d.drop = True
            return d

    def _throttle(self, d: Decision, path: str, identity: str, now: float) -> None:
        t = self.throttle
        assert t is not None
        used = self._usage(identity, now)
        cost = self._cost(path)
        after = used + cost
        q = self.usage.setdefault(identity, deque())
        block_at = t.budget * (1 + t.delay_band)
        if after > block_at:
            # blocked requests cost nothing, so a client that waits Retry-After gets through
            d.status, d.throttled = 429, True
            d.headers.update(self._headers(q, used, now))
            d.headers["Retry-After"] = str(self._retry_after(q, used, now))
            return
        q.append((now, cost))
        if after > t.budget * 0.5:
            d.headers.update(self._headers(q, after, now))
        if after > t.budget:
            share = (after - t.budget) / max(block_at - t.budget, 1e-9)
            delay = max(0.001, round(t.max_delay_seconds * min(share, 1.0), 3))
            d.delay += delay
            d.headers["X-RateLimit-Delay"] = f"{delay:.3f}"

    def _headers(self, q: deque[tuple[float, float]], used: float, now: float) -> dict[str, str]:
        t = self.throttle
        assert t is not None
        oldest = q[0][0] if q else now
        return {"X-RateLimit-Resource": f"{RESOURCE}",
                "X-RateLimit-Limit": _num(t.budget),
                "X-RateLimit-Remaining": _num(max(0.0, t.budget - used)),
                "X-RateLimit-Reset": str(int(oldest + t.window_seconds) + 1)}

    def _retry_after(self, q: deque[tuple[float, float]], used: float, now: float) -> int:
        """Seconds until enough of the window has expired for usage to fall back under the budget."""
        t = self.throttle
        assert t is not None
        need = used - t.budget
        for ts, c in q:
            need -= c
            if need < 0:
                return max(1, int(ts + t.window_seconds - now + 0.999))
        return 1


def _is_list(path: str) -> bool:
    """A collection GET (no id after the collection name) — the expensive kind of call."""
    last = path.rstrip("/").rsplit("/", 1)[-1].lower()
    return last in {"users", "groups", "serviceprincipals", "projects", "teams", "members",
                    "userentitlements", "auditlog", "identities", "memberships"}


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}"


def apply_mutation(data: Any, mutate: dict[str, Any]) -> Any:
    """The JSON answer `data` altered as a rule's `mutate` says (see the module docstring)."""
    if not isinstance(data, dict):
        return data
    for key in mutate.get("remove_keys") or []:
        data.pop(key, None)
    data.update(mutate.get("set") or {})
    for op in ("drop_item", "set_item", "duplicate_item"):
        spec = mutate.get(op)
        if not spec:
            continue
        items = data.get(spec.get("list", "value"))
        i = int(spec.get("index", 0))
        if isinstance(items, list) and -len(items) <= i < len(items):
            if op == "drop_item":
                del items[i]
            elif op == "duplicate_item":
                items.append(copy.deepcopy(items[i]))
            elif isinstance(items[i], dict):
                items[i][spec["key"]] = spec.get("value")
    return data


def faults_of(world: World) -> Faults:
    if world.faults is None:
        world.faults = Faults()
    return world.faults


def throttle_error_body(resource: str = RESOURCE, namespace: str = NAMESPACE) -> str:
    return ("TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
            f"resource '{resource}' in namespace '{namespace}'.")


class DroppedConnection(httpx.RemoteProtocolError):
    """A connection the fault layer cut mid-response.

    Over a real server, uvicorn closes the socket when the app raises after the response started, so
    the client sees an incomplete body (httpx.RemoteProtocolError). In process (httpx.ASGITransport)
    the exception itself reaches the client, with the same type a real drop has.
    """


async def drop_connection(send: Send) -> None:
    """Promise a body longer than we send, then stop: the client sees an incomplete read."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"content-length", b"4096")]})
    await send({"type": "http.response.body", "body": b'{"count":12,"value":[', "more_body": True})
    raise DroppedConnection("peer closed connection without sending complete message body "
                            "(simulated connection drop)")


async def sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


__all__ = [
    "Decision",
    "DroppedConnection",
    "Faults",
    "Rule",
    "Throttle",
    "apply_mutation",
    "drop_connection",
    "faults_of",
    "sleep",
    "throttle_error_body",
]
