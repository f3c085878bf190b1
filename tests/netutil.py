"""Helpers for the network tests: run trio tests under a deadline, make and serve hosts.

pytest-trio (0.8.0, last released 2022) is not used: this one decorator is all the tests need,
and it keeps the test dependencies to the pinned ones in pyproject.toml.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from amanah.node.net import FramedStream, Network

LOCAL = "/ip4/127.0.0.1/tcp/0"


def trio_test(timeout: float = 20) -> Callable[[Callable[..., Any]], Callable[..., None]]:
    """Run an async test function with trio.run, failing it after `timeout` seconds."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., None]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            async def main() -> None:
                with trio.fail_after(timeout):
                    await fn(*args, **kwargs)

            trio.run(main)

        return run

    return decorate


class AllowList(set):
    """A mutable set of trusted peer ids, usable as `is_trusted`; records every question."""

    def __init__(self, *peers: str) -> None:
        super().__init__(peers)
        self.asked: list[str] = []

    def __call__(self, peer_id: str) -> bool:
        self.asked.append(peer_id)
        return peer_id in self


def node(allow: AllowList | None = None, seed: bytes | None = None, **kw: Any) -> Network:
    """A Network on 127.0.0.1 with a free port, its AllowList (empty by default) as `.allow`."""
    allow = allow if allow is not None else AllowList()
    net = Network(seed or os.urandom(32), [LOCAL], allow, **kw)
    net.allow = allow  # type: ignore[attr-defined]
    return net


def trust_each_other(*nets: Network) -> None:
    for n in nets:
        n.allow.update(m.peer_id for m in nets if m is not n)  # type: ignore[attr-defined]


@asynccontextmanager
async def serving(*nets: Network) -> AsyncIterator[list[list[str]]]:
    """Serve the networks for the duration of the block; yields each one's addresses."""
    async with trio.open_nursery() as nursery:
        yield [await nursery.start(n.serve) for n in nets]
        nursery.cancel_scope.cancel()


class Recorder:
    """A stream handler that records who called and echoes frames until the peer ends."""

    def __init__(self, max_size: int = 1 << 20) -> None:
        self.peers: list[str] = []
        self.frames: list[bytes] = []
        self.errors: list[BaseException] = []
        self.max_size = max_size

    async def __call__(self, stream: FramedStream) -> None:
        self.peers.append(stream.peer_id)
        try:
            while frame := await stream.recv(self.max_size):
                self.frames.append(frame)
                await stream.send(frame)
        except Exception as e:
            self.errors.append(e)
            raise
