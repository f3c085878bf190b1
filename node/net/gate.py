"""The trust gate: only peers on the allow-list get a connection, checked after Noise.

libp2p 0.8.1 has no peer-id connection gate (its `allow_list` is by IP, and the resource
manager's never rejects). So the Noise transport is subclassed: once the stock XX handshake
has authenticated the remote peer, its id is checked with the node's `is_trusted`, in both
directions; an untrusted peer's connection is closed and the upgrade fails, before multistream,
yamux or any stream exist — no data of ours is ever sent to it.

What an untrusted peer does learn, inherent to Noise XX: if it dials us, our handshake message 2
carries our public key and a signature (our peer id is not a secret: it is in our addresses). If
we dial it, we check it in message 2 and libp2p still sends message 3 (our key) before our check
runs; `Network.open` refuses untrusted peer ids before dialing, so this happens only if the
allow-list changed during the handshake.

`is_trusted` is called on every connection (the allow-list can change while the node runs); an
exception from it counts as "not trusted" (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from libp2p.abc import IRawConnection, ISecureConn
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.peer.id import ID
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import Transport as NoiseTransport

from .fastio import batching_session

log = logging.getLogger("amanah.net")


def check_trust(
    is_trusted: Callable[[str], bool], peer_id: str, logger: logging.Logger = log
) -> bool:
    """Ask the allow-list; an error in it means "no"."""
    try:
        return bool(is_trusted(peer_id))
    except Exception:
        logger.exception("allow-list check failed for peer %s: refusing it", peer_id)
        return False


class TrustedNoise(NoiseTransport):
    """Noise XX that refuses peers the allow-list does not trust, and optionally batches I/O."""

    def __init__(
        self,
        key_pair: KeyPair,
        is_trusted: Callable[[str], bool],
        *,
        batching: bool,
        logger: logging.Logger = log,
    ) -> None:
        # The Noise static key only secures this run's handshakes (the identity key signs it):
        # a fresh one per host is what libp2p does by default too.
        super().__init__(key_pair, noise_privkey=create_x25519_key_pair().private_key)
        self._is_trusted = is_trusted
        self._batching = batching
        self._log = logger

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        return await self._admit(await super().secure_inbound(conn), "from")

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        return await self._admit(await super().secure_outbound(conn, peer_id), "to")

    async def _admit(self, secured: ISecureConn, direction: str) -> ISecureConn:
        remote = secured.get_remote_peer().to_base58()
        if not check_trust(self._is_trusted, remote, self._log):
            self._log.warning("refused connection %s untrusted peer %s", direction, remote)
            try:
                await secured.close()
            except Exception:  # already gone: refused all the same
                pass
            # HandshakeFailure is what the upgrader turns into a clean upgrade failure.
            raise HandshakeFailure(f"peer {remote} is not trusted")
        return batching_session(secured) if self._batching else secured
