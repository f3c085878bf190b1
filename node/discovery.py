"""LAN discovery with zeroconf: advertise and browse `_amanah._tcp.local.`.

Discovery never grants trust: a discovered node is used only if its peer id is already on the
allow-list, and then only as an address to dial (kept in memory). Failures (no multicast on the
interface, as in this sandbox's default namespace) are logged and leave the node running.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from .home import Node

if TYPE_CHECKING:
    from .daemon import P2P

log = logging.getLogger("amanah.discovery")
SERVICE = "_amanah._tcp.local."


class Discovery:
    def __init__(self, node: Node, p2p: P2P) -> None:
        from zeroconf import ServiceBrowser, ServiceInfo, Zeroconf

        self.node, self.p2p = node, p2p
        self.zc = Zeroconf()
        port, addresses = _tcp_port(p2p.addrs)
        self.info = None
        if port:
            self.info = ServiceInfo(
                SERVICE,
                f"{node.peer_id}.{SERVICE}",
                port=port,
                addresses=addresses,
                properties={"peer_id": node.peer_id},
            )
            self.zc.register_service(self.info)
        self.browser = ServiceBrowser(self.zc, SERVICE, handlers=[self._on_change])

    def _on_change(
        self, zeroconf: object, service_type: str, name: str, state_change: object
    ) -> None:
        info = self.zc.get_service_info(service_type, name, timeout=1000)
        if info is None:
            return
        peer_id = (info.properties or {}).get(b"peer_id", b"").decode("ascii", "replace")
        if peer_id not in self.p2p.trusted or peer_id == self.node.peer_id:
            return  # discovery never grants trust
        for raw in info.addresses:
            try:
                ip = socket.inet_ntoa(raw)
            except OSError:
                continue
            addr = f"/ip4/{ip}/tcp/{info.port}"
            log.info("found trusted peer %s on the LAN at %s", peer_id, addr)
            self.p2p.discovered_addr(peer_id, addr)
        if self.p2p.trio_token is not None:
            self.p2p.trio_token.run_sync_soon(self.p2p.poke, peer_id)

    def close(self) -> None:
        try:
            if self.info is not None:
                self.zc.unregister_service(self.info)
            self.zc.close()
        except Exception as exc:  # closing must not mask the shutdown
            log.debug("zeroconf close: %s", exc)


def _tcp_port(addrs: list[str]) -> tuple[int, list[bytes]]:
    """The TCP port we listen on and the IPv4 addresses to advertise for it."""
    for a in addrs:
        parts = a.split("/")
        if len(parts) > 4 and parts[1] == "ip4" and parts[3] == "tcp":
            if parts[2] != "0.0.0.0":
                return int(parts[4]), [socket.inet_aton(parts[2])]
            return int(parts[4]), [socket.inet_aton(ip) for ip in _local_ipv4()]
    return 0, []


def _local_ipv4() -> list[str]:
    """Every IPv4 address of this machine's interfaces (listening on 0.0.0.0)."""
    import ifaddr

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("169.254."):
                found.append(ip.ip)
    return found or ["127.0.0.1"]


def start(node: Node, p2p: P2P) -> Discovery | None:
    try:
        return Discovery(node, p2p)
    except Exception as exc:
        log.warning("LAN discovery (mDNS) is off: %s", exc)
        return None
