"""The simulator as a real HTTPS server on 127.0.0.1 (uvicorn thread, throwaway CA)."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azdo_sim.server import SimulatorServer
from azdo_sim.state import World

from tests.conftest import ORG, basic_auth, make_tiny

SUPPRESS = {"X-TFS-FedAuthRedirect": "Suppress"}


@pytest.fixture
def http(sim_server) -> Iterator[httpx.Client]:
    headers = {"Authorization": basic_auth(sim_server.pat), **SUPPRESS}
    with httpx.Client(base_url=sim_server.base_url, verify=sim_server.ssl_context(), headers=headers,
                      timeout=10) as c:
        yield c
    sim_server.world.faults.configure({})


def test_serves_over_tls_with_the_ca_bundle(sim_server, http: httpx.Client) -> None:
    assert sim_server.base_url.startswith("https://127.0.0.1:")
    assert sim_server.org_url(ORG) == f"{sim_server.base_url}/{ORG}"
    r = http.get(f"/{ORG}/_apis/resourceAreas")
    assert r.status_code == 200
    graph = next(a for a in r.json()["value"] if a["name"] == "Graph")
    # loopback: bodies echo the address the client used
    assert graph["locationUrl"] == f"{sim_server.base_url}/vssps/{ORG}/"
    users = http.get(f"{graph['locationUrl']}_apis/graph/users", params={"api-version": "7.1-preview.1"})
    assert users.status_code == 200 and users.json()["count"] > 0
    assert users.json()["value"][0]["url"].startswith(f"{sim_server.base_url}/vssps/{ORG}/_apis/")


def test_tls_is_verified(sim_server) -> None:
    # without the CA the default trust store refuses the throwaway certificate
    with pytest.raises(httpx.ConnectError) as info:
        httpx.get(f"{sim_server.base_url}/{ORG}/_apis/resourceAreas", timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    # the ssl_context helper trusts it; "localhost" is in the certificate too
    url = f"https://localhost:{sim_server.port}/{ORG}/_apis/resourceAreas"
    assert httpx.get(url, verify=sim_server.ssl_context(), timeout=5).status_code == 200


def test_dropped_connection_is_a_protocol_error(sim_server, http: httpx.Client) -> None:
    sim_server.world.faults.configure({"drop_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"/{ORG}/_apis/resourceAreas")
    # one-shot scripted drop, then normal service on a fresh connection
    sim_server.world.faults.configure({"rules": [{"path": "resourceareas", "count": 1, "drop": True}]})
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(f"/{ORG}/_apis/resourceAreas")
    assert http.get(f"/{ORG}/_apis/resourceAreas").status_code == 200


def test_503_and_429_over_the_wire(sim_server, http: httpx.Client) -> None:
    sim_server.world.faults.configure({"error_rate": 1.0})
    r = http.get(f"/{ORG}/_apis/resourceAreas")
    assert r.status_code == 503 and r.json()["typeKey"] == "ServiceUnavailableException"
    sim_server.world.faults.configure({"throttle": {"budget": 2, "delay_band": 0}})
    codes = [http.get(f"/{ORG}/_apis/projects", params={"api-version": "7.1"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_auth_answers_over_the_wire(sim_server) -> None:
    url = f"{sim_server.base_url}/{ORG}/_apis/projects?api-version=7.1"
    bad = {"Authorization": basic_auth("wrong")}
    r = httpx.get(url, headers=bad, verify=sim_server.ssl_context())
    assert r.status_code == 203 and r.headers["content-type"].startswith("text/html")
    r = httpx.get(url, headers={**bad, **SUPPRESS}, verify=sim_server.ssl_context())
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == f'Basic realm="https://127.0.0.1:{sim_server.port}/"'


def test_admin_api_over_the_wire(sim_server, http: httpx.Client) -> None:
    http.delete("/_sim/counters")
    http.get(f"/{ORG}/_apis/resourceAreas")
    assert http.get("/_sim/counters").json()["counts"] == {"GET /{org}/_apis/resourceareas": 1}
    token = http.post("/_sim/pats", json={"org": ORG, "scopes": ["vso.project"]}).json()["token"]
    r = httpx.get(f"{sim_server.org_url(ORG)}/_apis/projects?api-version=7.1",
                  headers={"Authorization": basic_auth(token), **SUPPRESS}, verify=sim_server.ssl_context())
    assert r.status_code == 200


def test_start_stop_and_plain_http() -> None:
    sim = make_tiny()
    server = SimulatorServer(sim.world, tls=False)
    with server:
        assert server.running and server.ca_file is None
        assert server.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.base_url}/{ORG}/_apis/resourceAreas").status_code == 200
        port = server.port
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/{ORG}/_apis/resourceAreas", timeout=2)


def test_tls_server_cleans_up_its_certificates() -> None:
    server = SimulatorServer(World(seed=1))
    server.start()
    ca = server.ca_file
    assert ca is not None and Path(ca).read_text().startswith("-----BEGIN CERTIFICATE-----")
    server.stop()
    assert not Path(ca).exists()


def test_cli_simulate_prints_and_serves(tmp_path) -> None:
    """`azdo-pipeline simulate` prints what a user needs, then serves until interrupted."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "azdo_sim.cli", "simulate", "--size", "tiny",
                             "--port", "0", "--cert-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(lines)
        assert "organization URL : https://127.0.0.1:" in text, text
        url = text.split("organization URL : ", 1)[1].split()[0]
        pat = text.split("PAT (org owner ", 1)[1].split("): ", 1)[1].split()[0]
        assert f"CA bundle        : {tmp_path}" in text
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        r = httpx.get(f"{url}/_apis/projects?api-version=7.1", verify=ctx,
                      headers={"Authorization": basic_auth(pat), **SUPPRESS})
        assert r.status_code == 200 and r.json()["count"] >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 130)


def test_unexpected_error_is_a_json_500() -> None:
    from azdo_sim.app import create_app
    from starlette.routing import Route

    async def boom(request: object) -> None:
        raise RuntimeError("kaput")

    sim = make_tiny()
    app = create_app(sim.world, extra_routes=[Route("/{org}/_apis/boom", boom)])
    with SimulatorServer(sim.world, app=app) as server:
        r = httpx.get(f"{server.org_url(ORG)}/_apis/boom", verify=server.ssl_context())
    assert r.status_code == 500
    assert r.json()["typeKey"] == "InternalServerErrorException"
    assert "kaput" in r.json()["message"]


def test_sim_server_for_and_admin_org_creation(sim_server_for) -> None:
    server = sim_server_for(size="small", seed=3)
    ctx = server.ssl_context()
    with httpx.Client(base_url=server.base_url, verify=ctx) as c:
        orgs = c.get("/_sim/orgs").json()
        assert [o["name"] for o in orgs["value"]] == [ORG] and orgs["value"][0]["users"] > 100
        r = c.post("/_sim/orgs", json={"name": "contoso", "size": "tiny", "seed": 1})
        assert r.status_code == 201 and r.json()["name"] == "contoso"
        assert c.post("/_sim/orgs", json={"name": "CONTOSO"}).status_code == 409
        assert c.post("/_sim/orgs", json={"name": "x", "size": "galactic"}).status_code == 400
        areas = c.get("/contoso/_apis/resourceAreas").json()["value"]
        assert any(a["locationUrl"] == f"{server.base_url}/vssps/contoso/" for a in areas)
        # the owner's org-bound PAT does not open the new organization
        r = c.get("/contoso/_apis/projects?api-version=7.1",
                  headers={"Authorization": basic_auth(server.pat), **SUPPRESS})
        assert r.status_code == 401
