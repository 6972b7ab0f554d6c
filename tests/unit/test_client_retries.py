"""Retries, backoff, Retry-After and X-RateLimit-* handling (fake clock: no real sleeping)."""

from __future__ import annotations

import httpx
import pytest

from azdo_pipeline.client import ClientSettings, ThrottledError, TransientError
from azdo_pipeline.client.errors import UnexpectedResponseError

from .test_client_support import FakeClock, FakeService, collect, connect, json_response, run

PAGE = {"count": 1, "value": [{"descriptor": "aad.x"}]}


def _script(svc: FakeService, path: str, answers: list) -> None:
    """Answer `path` with the scripted responses in order (an exception instance is raised)."""
    it = iter(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        a = next(it)
        if isinstance(a, Exception):
            raise a
        return a

    svc.on("GET", path, handler)


def test_5xx_then_success_retries_with_bounded_jittered_backoff() -> None:
    svc = FakeService()
    _script(svc, "/_apis/graph/users", [httpx.Response(503), httpx.Response(500), httpx.Response(502),
                                        json_response(PAGE)])
    clock = FakeClock()
    settings = ClientSettings(backoff_base=0.5, backoff_cap=30.0)

    async def go() -> None:
        async with await connect(svc, clock=clock, settings=settings) as c:
            pages = await collect(c.graph.iter_users())
            assert pages == [PAGE["value"]]
            assert c.stats.retries == 3 and c.stats.total == 4 + 1  # + discovery

    run(go())
    assert len(clock.sleeps) == 3
    for n, s in enumerate(clock.sleeps):
        assert 0 <= s <= min(30.0, 0.5 * 2 ** n)  # full jitter within the capped exponential


def test_connection_dropped_mid_body_is_retried_for_reads() -> None:
    svc = FakeService()
    _script(svc, "/_apis/graph/users", [httpx.RemoteProtocolError("peer closed connection mid-body"),
                                        httpx.ReadError("reset"), json_response(PAGE)])

    async def go() -> None:
        async with await connect(svc) as c:
            assert await collect(c.graph.iter_users()) == [PAGE["value"]]
            assert c.stats.retries == 2

    run(go())


def test_truncated_json_body_is_retried() -> None:
    svc = FakeService()
    bad = httpx.Response(200, content=b'{"count": 1, "value": [{"desc', headers={"content-type": "application/json"})
    _script(svc, "/_apis/graph/users", [bad, json_response(PAGE)])

    async def go() -> None:
        async with await connect(svc) as c:
            assert await collect(c.graph.iter_users()) == [PAGE["value"]]

    run(go())


def test_retry_count_is_bounded() -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: httpx.Response(503, text="busy"))

    async def go() -> None:
        async with await connect(svc, settings=ClientSettings(max_retries=3)) as c:
            with pytest.raises(TransientError) as e:
                await collect(c.graph.iter_users())
            assert e.value.status == 503

    run(go())
    assert svc.count("GET", "/_apis/graph/users") == 4


def test_retry_time_is_bounded() -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: httpx.Response(503))
    clock = FakeClock()
    settings = ClientSettings(max_retries=100, max_retry_seconds=20.0, backoff_base=4.0, backoff_cap=10.0)

    async def go() -> None:
        async with await connect(svc, clock=clock, settings=settings) as c:
            with pytest.raises(TransientError):
                await collect(c.graph.iter_users())

    run(go())
    assert sum(clock.sleeps) <= 20.0
    assert svc.count("GET", "/_apis/graph/users") < 100


def test_429_retry_after_is_honoured() -> None:
    svc = FakeService()
    _script(svc, "/_apis/graph/users", [
        json_response({"message": "TF400733: Request was blocked"}, 429, {"Retry-After": "7"}),
        json_response(PAGE)])
    clock = FakeClock()

    async def go() -> None:
        async with await connect(svc, clock=clock) as c:
            assert await collect(c.graph.iter_users()) == [PAGE["value"]]
            assert c.stats.throttled == 1 and c.stats.retries == 1

    run(go())
    assert clock.sleeps == [7.0]


def test_retry_after_longer_than_budget_fails_fast_with_throttled_error() -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: httpx.Response(429, headers={"Retry-After": "900"}))

    async def go() -> None:
        async with await connect(svc, settings=ClientSettings(max_retry_seconds=300)) as c:
            with pytest.raises(ThrottledError) as e:
                await collect(c.graph.iter_users())
            assert e.value.retry_after == 900

    run(go())
    assert svc.count("GET", "/_apis/graph/users") == 1


def test_retry_after_on_a_200_delays_the_next_request() -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: json_response(PAGE, headers={"Retry-After": "3"}))
    svc.on("GET", "/_apis/graph/groups", lambda r: json_response(PAGE))
    clock = FakeClock()

    async def go() -> None:
        async with await connect(svc, clock=clock) as c:
            await collect(c.graph.iter_users())
            assert clock.sleeps == []  # the 200 is used as is
            await collect(c.graph.iter_groups())
            assert c.stats.throttled == 1

    run(go())
    assert clock.sleeps == [3.0]


def test_rate_limit_delay_and_low_remaining_slow_down() -> None:
    svc = FakeService()
    clock = FakeClock()
    reset = str(1_800_000_000 + 100)  # window resets in 100 s; 10 TSTUs left of 200
    svc.on("GET", "/_apis/graph/users", lambda r: json_response(PAGE, headers={
        "X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "10", "X-RateLimit-Reset": reset}))
    svc.on("GET", "/_apis/graph/groups", lambda r: json_response(PAGE, headers={"X-RateLimit-Delay": "1.5"}))

    async def go() -> None:
        async with await connect(svc, clock=clock) as c:
            await collect(c.graph.iter_users())
            await collect(c.graph.iter_groups())  # waits ~10 s: 100 s / 10 requests left
            await collect(c.graph.iter_users())  # waits 1.5 s after the delayed answer
            assert c.stats.throttled == 1

    run(go())
    assert clock.sleeps[0] == pytest.approx(10.0)
    assert clock.sleeps[1] == pytest.approx(1.5)


@pytest.mark.timeout(30)  # fewer than 3 in flight at once would wait here forever
def test_concurrency_is_bounded() -> None:
    import asyncio

    svc = FakeService()
    in_flight = {"now": 0, "max": 0}
    three: list[asyncio.Event] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        if not three:
            three.append(asyncio.Event())
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        if in_flight["now"] == 3:
            three[0].set()
        await three[0].wait()  # the first answers wait until three requests are in flight together
        await asyncio.sleep(0)  # one more turn in flight: a fourth, were it let through, would be seen
        in_flight["now"] -= 1
        return json_response({"value": "x"})

    async def go() -> None:
        import random

        from azdo_pipeline.client import AzureDevOpsClient

        def handler(request: httpx.Request):  # discovery sync, the rest async
            if "resourceAreas" in str(request.url):
                return json_response(svc.urls())
            return slow(request)

        transport = httpx.MockTransport(handler)
        async with await AzureDevOpsClient.connect(
                svc.org_url, _Cred(), settings=ClientSettings(max_concurrency=3), transport=transport,
                rng=random.Random(0)) as c:
            await asyncio.gather(*(c.graph.storage_key(f"aad.{i}") for i in range(20)))

    run(go())
    assert in_flight["max"] == 3


class _Cred:
    async def auth_header(self) -> str:
        return "Basic x"

    async def on_unauthorized(self) -> bool:
        return False


@pytest.mark.parametrize(("answer", "problem"), [
    (httpx.Response(200, content=b'{"value": []}', headers={"content-type": "text/plain"}),
     "content type text/plain, expected application/json"),
    (httpx.Response(200, content=b"", headers={"content-type": "application/json"}), "an empty body"),
    (httpx.Response(200, content=b"null", headers={"content-type": "application/json"}), "JSON null"),
    (json_response({"count": 2}), "no `value` list"),
])
def test_damaged_page_is_read_again_a_bounded_number_of_times_then_named(answer: httpx.Response,
                                                                        problem: str) -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: answer)
    clock = FakeClock()

    async def go() -> None:
        async with await connect(svc, clock=clock, settings=ClientSettings(damaged_retries=2)) as c:
            with pytest.raises(UnexpectedResponseError) as err:
                await collect(c.graph.iter_users())
            assert c.stats.by_endpoint["GET graph/users"] == 3  # the first read and two more
            assert "GET graph/users" in str(err.value) and problem in str(err.value)
            assert "read 3 times" in str(err.value)

    run(go())


def test_damaged_page_then_a_good_one_reads_the_good_one() -> None:
    svc = FakeService()
    _script(svc, "/_apis/graph/users", [json_response({"count": 1}), json_response(PAGE)])

    async def go() -> None:
        async with await connect(svc, clock=FakeClock()) as c:
            assert await collect(c.graph.iter_users()) == [PAGE["value"]]
            assert c.stats.by_endpoint["GET graph/users"] == 2

    run(go())


@pytest.mark.parametrize(("status", "headers", "named"), [
    (200, {"Retry-After": "3600"}, "Retry-After on HTTP 200"),
    (200, {"X-RateLimit-Delay": "3600"}, "X-RateLimit-Delay on HTTP 200"),
    (429, {"Retry-After": "3600"}, "Retry-After on HTTP 429"),
    (503, {"Retry-After": "Fri, 04 Dec 2099 10:00:00 GMT"}, "Retry-After on HTTP 503"),
])
def test_a_wait_beyond_the_cap_ends_the_run_instead_of_sleeping(status: int, headers: dict[str, str],
                                                                named: str) -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: json_response(PAGE, status=status, headers=headers))
    clock = FakeClock()

    async def go() -> None:
        async with await connect(svc, clock=clock, settings=ClientSettings(max_wait_seconds=300)) as c:
            with pytest.raises(ThrottledError) as err:
                await collect(c.graph.iter_users())
            msg = str(err.value)
            assert "GET graph/users: throttled for" in msg and named in msg
            assert "retry later or raise the cap (setting max_wait_seconds, now 300 s)" in msg
            assert err.value.retry_after is not None and err.value.retry_after > 300

    run(go())
    assert clock.sleeps == []  # nothing waited: the run ends at once
    assert svc.count("GET", "/_apis/graph/users") == 1


def test_a_wait_within_the_cap_is_honoured() -> None:
    svc = FakeService()
    svc.on("GET", "/_apis/graph/users", lambda r: json_response(PAGE, headers={"X-RateLimit-Delay": "250"}))
    svc.on("GET", "/_apis/graph/groups", lambda r: json_response(PAGE))
    clock = FakeClock()

    async def go() -> None:
        async with await connect(svc, clock=clock, settings=ClientSettings(max_wait_seconds=300)) as c:
            await collect(c.graph.iter_users())
            await collect(c.graph.iter_groups())

    run(go())
    assert clock.sleeps == [pytest.approx(250.0)]
