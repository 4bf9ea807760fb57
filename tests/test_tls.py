"""TLS on the TCP listeners: a daemon with a certificate from a throwaway CA
(trustme), reached over https by the SDK (both clients), the CLI and gRPC;
refused in plain text and by a client that does not trust the CA."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from grpclib.client import Channel

from aether import pb
from aether.client import AsyncClient, Client
from aether.errors import Unavailable
from aetherd.testing import free_port

TOKEN = "tls-test-token"


class TlsDaemon:
    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        leaf = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert, key = tmp / "cert.pem", tmp / "key.pem"
        for i, pem in enumerate(leaf.cert_chain_pems):
            pem.write_to_path(str(cert), append=i > 0)
        leaf.private_key_pem.write_to_path(str(key))
        config = tmp / "aetherd.toml"
        config.write_text(f'[aetherd]\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
        self.http_port, self.grpc_port = free_port(), free_port()
        self.log = tmp / "aetherd.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aetherd", "serve", "--data-dir", str(tmp / "data"),
             "--config", str(config), "--token", TOKEN,
             "--http", f"tcp:127.0.0.1:{self.http_port}",
             "--grpc", f"tcp:127.0.0.1:{self.grpc_port}"],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        self.url = f"https://127.0.0.1:{self.http_port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                with Client(self.url, token=TOKEN, timeout=2) as c:
                    c.health()
                    return
            except Unavailable:
                time.sleep(0.1)
        raise AssertionError(f"no TLS daemon:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[TlsDaemon]:
    d = TlsDaemon(tmp_path_factory.mktemp("tls"))
    # The standard variable every OpenSSL client honours (Python's ssl, httpx):
    # how a client is told to trust a private CA.
    old = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(d.ca_file)
    try:
        d.wait_ready()
        yield d
    finally:
        d.stop()
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old


def test_the_blocking_client_works_over_tls(tls):
    with Client(tls.url, token=TOKEN) as c:
        s = c.create_session(name="over tls")
        c.write_file(s.id, "a.txt", b"secret")
        assert c.read_file(s.id, "a.txt").data == b"secret"
        assert c.who_am_i().name == "admin"


async def test_the_async_client_works_over_tls(tls):
    async with AsyncClient(tls.url, token=TOKEN) as c:
        assert (await c.health()).status == "ok"


def test_plain_text_and_untrusted_clients_are_refused(tls, monkeypatch):
    with Client(tls.url.replace("https:", "http:"), token=TOKEN, timeout=5) as c, \
            pytest.raises(Unavailable):
        c.health()
    monkeypatch.delenv("SSL_CERT_FILE")  # the system store does not know this CA
    with Client(tls.url, token=TOKEN, timeout=5) as c, \
            pytest.raises(Unavailable, match="(?i)certificate"):
        c.health()


def test_the_cli_talks_tls(tls):
    env = {**os.environ, "AETHER_SERVER": tls.url, "AETHER_TOKEN": TOKEN}
    out = subprocess.run([sys.executable, "-m", "aether.cli", "--json", "health"], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '"status": "ok"' in out.stdout


async def test_grpc_over_tls(tls):
    ctx = ssl.create_default_context(cafile=str(tls.ca_file))
    ctx.set_alpn_protocols(["h2"])
    channel = Channel("127.0.0.1", tls.grpc_port, ssl=ctx)
    try:
        stub = pb.ObservabilityServiceStub(channel,
                                           metadata={"authorization": f"Bearer {TOKEN}"})
        assert (await stub.health(pb.HealthRequest())).status == "ok"
    finally:
        channel.close()


def test_a_bad_certificate_stops_the_daemon_at_start(tmp_path):
    config = tmp_path / "aetherd.toml"
    config.write_text(f'[aetherd]\ntls_cert_file = "{tmp_path}/nope.pem"\n'
                      f'tls_key_file = "{tmp_path}/nope.key"\n')
    out = subprocess.run(
        [sys.executable, "-m", "aetherd", "serve", "--data-dir", str(tmp_path / "data"),
         "--config", str(config), "--token", TOKEN, "--http", f"tcp:127.0.0.1:{free_port()}",
         "--grpc", f"tcp:127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "TLS certificate" in out.stderr
