"""Local port forwarding over a Fabric connection's SSH transport.

Fabric's own ``forward_local`` stops accepting connections for good when one
channel fails to open (e.g. a probe before the remote service listens), and
re-raises a client's ordinary connection reset on exit. This forwarder keeps
each connection's failure to that connection.
"""
from __future__ import annotations

import select
import socket
import threading


class Tunnel:
    """127.0.0.1:<port> on the workstation -> 127.0.0.1:<remote_port> on the node."""

    def __init__(self, transport, remote_port: int):
        self.transport, self.remote_port = transport, remote_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(32)
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, peer), daemon=True).start()

    def _serve(self, client: socket.socket, peer) -> None:
        try:
            channel = self.transport.open_channel("direct-tcpip", ("127.0.0.1", self.remote_port), peer)
        except Exception:  # noqa: BLE001 - the remote port refused: this connection fails, not the tunnel
            client.close()
            return
        try:
            _pump(client, channel, self.closed)
        finally:
            channel.close()
            client.close()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()

    def __enter__(self) -> "Tunnel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pump(client: socket.socket, channel, closed: threading.Event) -> None:
    while not closed.is_set():
        readable, _, _ = select.select([client, channel], [], [], 1.0)
        for source, sink in ((client, channel), (channel, client)):
            if source in readable:
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                sink.sendall(data)
