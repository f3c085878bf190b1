"""`PeerSlots`: how many of something each peer holds open at once, with a ceiling.

yamux bounds neither the number of inbound streams nor what they hold, so the network layer
counts streams per peer and the daemon counts sync sessions per peer, both with this.
"""

from __future__ import annotations


class PeerSlots(dict[str, int]):
    """Open slots per peer id (peers holding none are absent), at most `limit` each."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def take(self, peer_id: str) -> bool:
        """Take a slot for `peer_id`; False, taking none, if it already holds `limit`."""
        held = self.get(peer_id, 0)
        if held >= self.limit:
            return False
        self[peer_id] = held + 1
        return True

    def release(self, peer_id: str) -> None:
        """Give back a slot `take` gave."""
        if self[peer_id] > 1:
            self[peer_id] -= 1
        else:
            del self[peer_id]
