"""A Channel over links (link.py), so that protocol code runs unchanged between services.

Bytes and rounds are counted exactly as in the in-process transport (channel.payload_bytes of each
message, by the base class), not as the bytes of frames on the wire, so that figures compare across
transports. A message is encoded while it is sent: the sender may change its arrays afterwards, as with
the in-process transport's hand-over; received arrays are fresh and writable.
"""
from __future__ import annotations

from ppfr.mpc.channel import Channel, payload_bytes


class LinkChannel(Channel):
    """Party `name`'s channel over {peer name: Link}."""

    def __init__(self, name: str, links: dict):
        super().__init__(name)
        self.links = dict(links)

    def _link(self, peer):
        link = self.links.get(peer)
        if link is None:
            raise ValueError(f"{self.name} has no link to {peer!r}")
        return link

    def _put(self, to, message, copy: bool = True):
        self._link(to).send(message)
        return message, payload_bytes(message)

    def _get(self, sender):
        message = self._link(sender).recv()
        return message, payload_bytes(message)

    def close(self, reason: str = "the session ended") -> None:
        for link in self.links.values():
            link.close(reason)
