"""Where a webhook delivery connects (jobs/webhooks.py HttpSender), against real HTTP(S) servers on
127.0.0.1: the POST goes to the address that was checked, never to a second answer of the resolver (DNS
rebinding), and it keeps the URL's name in its Host header and its TLS server name (SNI).

No test here resolves a real name: names are ``.invalid`` ones answered by a resolver the test gives the
sender, and every connection goes through :class:`AddressesOnly`, which refuses to connect to a name (a
lookup would leave the machine) and stands a local server in for the one public address used here.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schemasaga.domain.webhooks import TargetPolicy
from schemasaga.jobs.webhooks import HttpSender

PUBLIC = "1.2.3.4"  # a public address; never connected to (AddressesOnly sends it to a local stand-in)
TOKEN = "tok-3f9a1c"  # in the URLs' paths: never in an error


@dataclass
class Server:
    """An HTTP(S) server on 127.0.0.1 that answers 200 and keeps what it was sent."""

    port: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(tls: ssl.SSLContext | None = None) -> Server:
        state = Server()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: state.server_names.append(name)
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class AddressesOnly(httpx.AsyncBaseTransport):
    """A real transport that connects only to IP addresses (a name would be looked up: an error here),
    and sends what is addressed to :data:`PUBLIC` to a local server instead (as a router would)."""

    def __init__(self, *, public_stand_in: int = 0, verify: ssl.SSLContext | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=verify or True)
        self.public_stand_in = public_stand_in
        self.hosts: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hosts.append(host)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise AssertionError(f"the sender let httpx resolve the name {host!r}") from None
        if host == PUBLIC:
            request.url = request.url.copy_with(host="127.0.0.1", port=self.public_stand_in)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Resolver:
    """Answers from a table of names; counts its calls. ``later`` answers every call after the first."""

    def __init__(self, first: dict[str, Sequence[str]], later: Sequence[str] | None = None) -> None:
        self.first = first
        self.later = later
        self.calls: list[str] = []

    async def __call__(self, host: str) -> Sequence[str]:
        self.calls.append(host)
        if self.later is not None and len(self.calls) > 1:
            return self.later
        if host not in self.first:
            raise OSError(f"no such name: {host}")
        return self.first[host]


def sender(
    resolver: Resolver, transport: AddressesOnly, *, allowed: str = "", timeout: float = 5.0
) -> HttpSender:
    return HttpSender(
        policy=TargetPolicy.build(allowed), timeout=timeout, resolve=resolver, transport=lambda: transport
    )


async def test_a_rebinding_name_is_sent_to_the_address_that_was_checked(serve: Any) -> None:
    """The resolver answers a public address first and 127.0.0.1 after: the POST goes to the public
    address (a local stand-in here), and the server listening on 127.0.0.1 for it gets nothing."""
    internal = serve()  # what the attacker wants reached: 127.0.0.1 at the URL's port
    public = serve()  # stands in for PUBLIC
    resolver = Resolver({"rebind.invalid": [PUBLIC]}, later=["127.0.0.1"])
    transport = AddressesOnly(public_stand_in=public.port)

    sent = await sender(resolver, transport).post(
        f"http://rebind.invalid:{internal.port}/hook/{TOKEN}", body=b"{}", headers={"X-A": "1"}
    )

    assert (sent.status_code, sent.error) == (200, None)
    assert internal.requests == []
    assert [path for path, _ in public.requests] == [f"/hook/{TOKEN}"]
    assert public.requests[0][1]["host"] == f"rebind.invalid:{internal.port}"
    assert resolver.calls == ["rebind.invalid"]
    assert transport.hosts == [PUBLIC]


async def test_a_name_with_any_non_public_address_is_refused_before_connecting(serve: Any) -> None:
    internal = serve()
    resolver = Resolver({"mixed.invalid": [PUBLIC, "127.0.0.1"]})
    transport = AddressesOnly()

    sent = await sender(resolver, transport).post(
        f"http://mixed.invalid:{internal.port}/hook", body=b"{}", headers={}
    )

    assert sent.status_code is None and "non-public address" in (sent.error or "")
    assert internal.requests == [] and transport.hosts == []


async def test_the_receiver_sees_the_urls_name_as_host(serve: Any) -> None:
    """An allow-listed name that resolves to 127.0.0.1: the POST reaches it with ``Host`` the name."""
    receiver = serve()
    resolver = Resolver({"hooks.invalid": ["127.0.0.1"]})
    transport = AddressesOnly()

    sent = await sender(resolver, transport, allowed="hooks.invalid").post(
        f"http://hooks.invalid:{receiver.port}/hook?t={TOKEN}", body=b"{}", headers={}
    )

    assert (sent.status_code, sent.error) == (200, None)
    assert [(path, h["host"]) for path, h in receiver.requests] == [
        (f"/hook?t={TOKEN}", f"hooks.invalid:{receiver.port}")
    ]
    assert transport.hosts == ["127.0.0.1"]


def _certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for ``name`` only (no IP address in it), and its key, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_https_carries_the_name_in_sni_and_checks_the_certificate_against_it(
    serve: Any, tmp_path: Any
) -> None:
    """Connected to 127.0.0.1, the TLS handshake names ``hooks.invalid`` (SNI) and the certificate, which
    names only ``hooks.invalid``, is accepted: it was checked against the name, not the address."""
    cert_pem, key_pem = _certificate("hooks.invalid")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    receiver = serve(server_tls)
    client_tls = ssl.create_default_context(cadata=cert_pem.decode("ascii"))
    resolver = Resolver({"hooks.invalid": ["127.0.0.1"]})
    transport = AddressesOnly(verify=client_tls)

    sent = await sender(resolver, transport, allowed="hooks.invalid").post(
        f"https://hooks.invalid:{receiver.port}/hook", body=b"{}", headers={}
    )

    assert (sent.status_code, sent.error) == (200, None)
    assert receiver.server_names == ["hooks.invalid"]
    assert receiver.requests[0][1]["host"] == f"hooks.invalid:{receiver.port}"
    assert transport.hosts == ["127.0.0.1"]


async def test_the_addresses_are_tried_in_order_and_errors_never_hold_the_url(serve: Any) -> None:
    """127.0.0.2 refuses the connection (nothing listens there): the POST goes to the next address. When
    no address answers, the error names neither the URL nor its token."""
    receiver = serve()
    resolver = Resolver({"hooks.invalid": ["127.0.0.2", "127.0.0.1"]})
    transport = AddressesOnly()
    hooks = sender(resolver, transport, allowed="hooks.invalid")

    sent = await hooks.post(f"http://hooks.invalid:{receiver.port}/hook/{TOKEN}", body=b"{}", headers={})
    assert (sent.status_code, sent.error) == (200, None)
    assert transport.hosts == ["127.0.0.2", "127.0.0.1"] and len(receiver.requests) == 1

    nowhere = sender(Resolver({"hooks.invalid": ["127.0.0.2"]}), AddressesOnly(), allowed="hooks.invalid")
    sent = await nowhere.post(f"http://hooks.invalid:{receiver.port}/hook/{TOKEN}", body=b"{}", headers={})
    assert sent.status_code is None and sent.error and "ConnectError" in sent.error
    assert TOKEN not in sent.error and "hooks.invalid" not in sent.error


async def test_an_address_in_the_url_is_checked_again_when_sending(serve: Any) -> None:
    """A webhook made to 127.0.0.1 while the allow-list named it, sent after the list was emptied: refused."""
    internal = serve()
    sent = await HttpSender(policy=TargetPolicy.build(""), timeout=5.0).post(
        f"http://127.0.0.1:{internal.port}/hook", body=b"{}", headers={}
    )
    assert sent.status_code is None and "local or private network" in (sent.error or "")
    assert internal.requests == []


async def test_an_international_name_is_resolved_and_sent_as_httpx_writes_it(serve: Any) -> None:
    """The resolver is asked the IDNA form, which also goes in ``Host``; the allow-list may name either."""
    receiver = serve()
    resolver = Resolver({"xn--bcher-kva.invalid": ["127.0.0.1"]})
    hooks = sender(resolver, AddressesOnly(), allowed="bücher.invalid")

    sent = await hooks.post(f"http://Bücher.invalid:{receiver.port}/hook", body=b"{}", headers={})

    assert (sent.status_code, sent.error) == (200, None)
    assert resolver.calls == ["xn--bcher-kva.invalid"]
    assert receiver.requests[0][1]["host"] == f"xn--bcher-kva.invalid:{receiver.port}"
