# A QUIC echo server (aioquic) for FlowTests, serving the UDP socket Baton passes at
# fd 3: every line on a stream is answered with itself and " g<BATON_GENERATION>".
# With BATON_QUIC_COOKIES set (flows = "quic") every connection ID it issues carries
# its socket's cookie in bytes 1-4 (Docs/steering.md, Docs/wrapping.md); without it,
# its IDs are aioquic's own random ones. On its drain signal it keeps serving its
# connections and exits once none is left (or none has sent anything for 5 s).
import asyncio
import os
import signal
import socket
import time

import aioquic.asyncio.server
from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived

here = os.path.dirname(os.path.abspath(__file__))
generation = os.environ.get("BATON_GENERATION", "?").encode()
cookies = os.environ.get("BATON_QUIC_COOKIES", "").split(":")
cookie = bytes.fromhex(cookies[0]) if cookies and cookies[0] else None


def with_cookie(cid):
    # Byte 0 and bytes 5 on stay random: only bytes 1-4 are Baton's.
    return cid[:1] + cookie + cid[5:]


class CookieConnection(QuicConnection):
    """aioquic's connection, issuing connection IDs that carry the socket's cookie."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self._is_client:
            for issued in self._host_cids:
                issued.cid = with_cookie(issued.cid)
            self.host_cid = self._host_cids[0].cid
            self._local_initial_source_connection_id = self.host_cid

    def _replenish_connection_ids(self):
        before = len(self._host_cids)
        super()._replenish_connection_ids()
        for issued in self._host_cids[before:]:
            issued.cid = with_cookie(issued.cid)


if cookie is not None:
    # QuicServer makes its connections with the name it imported.
    aioquic.asyncio.server.QuicConnection = CookieConnection

live = set()
heard = time.monotonic()


class Echo(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        live.add(self)
        self.lines = {}

    def quic_event_received(self, event):
        global heard
        heard = time.monotonic()
        if isinstance(event, StreamDataReceived):
            buffered = self.lines.get(event.stream_id, b"") + event.data
            *complete, rest = buffered.split(b"\n")
            self.lines[event.stream_id] = rest
            for line in complete:
                self._quic.send_stream_data(event.stream_id, line + b" g" + generation + b"\n")
            self.transmit()
        elif isinstance(event, ConnectionTerminated):
            live.discard(self)


async def main():
    configuration = QuicConfiguration(is_client=False, alpn_protocols=["echo"])
    configuration.load_cert_chain(os.path.join(here, "cert.pem"), os.path.join(here, "key.pem"))
    loop = asyncio.get_running_loop()
    draining = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, draining.set)
    sock = socket.socket(fileno=3)
    await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=Echo), sock=sock)
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.connect("\0" + address[1:] if address.startswith("@") else address)
        notify.send(b"READY=1")
        notify.close()
    await draining.wait()
    while live and time.monotonic() - heard < 5:
        await asyncio.sleep(0.1)


asyncio.run(main())
