"""A trusted but hostile peer over real libp2p (127.0.0.1): what it sends is refused before
anything is stored, the refusal is logged with its peer id, its connection is dropped, and an
honest peer still replicates afterwards."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trio
from amanah.node import collections, grants, ingest, peers, replicate, sync_server
from amanah.node.daemon import P2P
from amanah.node.errors import StoreFull
from amanah.node.home import Node, init_home
from amanah.node.net import Network
from amanah.node.verify import verify_all
from amanah.protocol import sync as msg

pytestmark = pytest.mark.timeout(120)
PW = "pw"


def make(tmp: Path, name: str) -> Node:
    init_home(tmp / name, name, PW)
    return Node(tmp / name, lambda: PW)


def corrupt_blocks(request: dict, response: bytes) -> bytes:
    if request["t"] == "block?":
        data = bytearray(response)
        data[-1] ^= 0x40
        return bytes(data)
    return response


def ungranted_heads(request: dict, response: bytes) -> bytes:
    return response  # the server below announces and serves everything it holds, granted or not


class HostileServer(sync_server.Server):
    def __init__(self, node: Node, peer_key: bytes, serve_everything: bool) -> None:
        super().__init__(node, peer_key)
        self.serve_everything = serve_everything

    def _state(self, txn, col, log_only=False):  # noqa: ANN001, ANN202
        if self.serve_everything:
            return self.node.archive.state(txn, col)
        return super()._state(txn, col, log_only)


async def run_hostile(server: Node, tamper, serve_everything: bool, puller: Node, addrs_out: list):  # noqa: ANN001
    net = Network(server.identity.seed, ["/ip4/127.0.0.1/tcp/0"], lambda pid: pid == puller.peer_id)

    async def handler(stream) -> None:  # noqa: ANN001
        from amanah.protocol import ids

        srv = HostileServer(server, ids.public_key_from_peer_id(stream.peer_id), serve_everything)
        while True:
            frame = await stream.recv(msg.MAX_REQUEST)
            if not frame:
                return
            request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
            for response in srv.answer(request):
                await stream.send(tamper(request, response))

    net.handle(msg.SYNC_PROTOCOL, handler)
    return net


@pytest.mark.parametrize(
    "tamper, serve_everything, expect",
    [(corrupt_blocks, False, "does not match its id"), (ungranted_heads, True, "never granted")],
)
def test_hostile_peer_is_refused_logged_and_dropped(
    tmp_path, caplog, tamper, serve_everything, expect
):
    hostile, victim, honest = (
        make(tmp_path, "hostile"),
        make(tmp_path, "victim"),
        make(tmp_path, "honest"),
    )
    col = collections.create(hostile, "stuff", "public")
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(300_000))
    ingest.add(hostile, col, ingest.gather([f]), {})
    if not serve_everything:
        grants.share(hostile, col, victim.peer_id)
    good = collections.create(honest, "good", "public")
    ingest.add(honest, good, ingest.gather([f]), {})
    grants.share(honest, good, victim.peer_id)

    async def main() -> None:
        bad_net = await run_hostile(hostile, tamper, serve_everything, victim, [])
        good_net = Network(
            honest.identity.seed, ["/ip4/127.0.0.1/tcp/0"], lambda pid: pid == victim.peer_id
        )
        good_p2p = P2P(honest, [])
        good_net.handle(msg.SYNC_PROTOCOL, good_p2p._serve_sync)
        async with trio.open_nursery() as n:
            bad_addrs = await n.start(bad_net.serve)
            good_addrs = await n.start(good_net.serve)
            peers.add(victim, hostile.peer_id, [bad_addrs[0].rsplit("/p2p/", 1)[0]], "hostile")
            peers.add(victim, honest.peer_id, [good_addrs[0].rsplit("/p2p/", 1)[0]], "honest")
            peers.add(honest, victim.peer_id, [], "victim")
            peers.add(hostile, victim.peer_id, [], "victim")
            good_p2p._load_peers()
            p2p = P2P(victim, ["/ip4/127.0.0.1/tcp/0"])
            p2p.net = Network(victim.identity.seed, ["/ip4/127.0.0.1/tcp/0"], p2p.is_trusted)
            await n.start(p2p.net.serve)
            with caplog.at_level(logging.INFO, logger="amanah"):
                assert await p2p.sync_once(hostile.peer_id) is False
            assert hostile.peer_id not in p2p.net.connected()
            assert await p2p.sync_once(honest.peer_id) is True
            n.cancel_scope.cancel()

    trio.run(main)
    refusal = [r.getMessage() for r in caplog.records if "violated" in r.getMessage()]
    assert refusal and hostile.peer_id in refusal[0] and expect in refusal[0]
    report = verify_all(victim)
    assert all("missing" in d.problem for d in report.damaged)  # nothing corrupt was stored
    with victim.store.read() as txn:
        held = {s.id for s in victim.archive.states(txn)}
    assert good.state.id in held
    if serve_everything:
        assert col.state.id not in held
    for n_ in (hostile, victim, honest):
        n_.close()


@pytest.mark.parametrize(
    "failure, logged",
    [
        (StoreFull("the store is full (map size reached)"), "stopped: the store is full"),
        (RuntimeError("a bug"), "unexpected error"),
    ],
    ids=["store-full", "bug"],
)
def test_a_local_failure_in_a_pull_is_reported_and_the_node_goes_on(
    tmp_path, caplog, monkeypatch, failure, logged
):
    source, puller = make(tmp_path, "source"), make(tmp_path, "puller")
    col = collections.create(source, "stuff", "public")
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(300_000))
    ingest.add(source, col, ingest.gather([f]), {})
    grants.share(source, col, puller.peer_id)
    real = replicate.Puller._store_records

    def failing(self: replicate.Puller, *args: object) -> None:
        raise failure

    async def main() -> None:
        serving = P2P(source, ["/ip4/127.0.0.1/tcp/0"])
        serving.net = Network(source.identity.seed, ["/ip4/127.0.0.1/tcp/0"], serving.is_trusted)
        serving.net.handle(msg.SYNC_PROTOCOL, serving._serve_sync)
        p2p = P2P(puller, ["/ip4/127.0.0.1/tcp/0"])
        p2p.net = Network(puller.identity.seed, ["/ip4/127.0.0.1/tcp/0"], p2p.is_trusted)
        async with trio.open_nursery() as n:
            addrs = await n.start(serving.net.serve)
            await n.start(p2p.net.serve)
            peers.add(puller, source.peer_id, [addrs[0].rsplit("/p2p/", 1)[0]], "source")
            peers.add(source, puller.peer_id, [], "puller")
            serving._load_peers()
            p2p._load_peers()
            monkeypatch.setattr(replicate.Puller, "_store_records", failing)
            with caplog.at_level(logging.INFO, logger="amanah"):
                assert await p2p.sync_once(source.peer_id) is False  # returned, not raised
            assert str(failure) in p2p.last_result[source.peer_id]["error"]
            monkeypatch.setattr(replicate.Puller, "_store_records", real)
            assert await p2p.sync_once(source.peer_id) is True  # the next pull completes
            n.cancel_scope.cancel()

    trio.run(main)
    assert any(logged in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert verify_all(puller).ok
    with puller.store.read() as txn:
        length = collections.resolve(source, "stuff").state.length  # genesis, item, grant
        assert length == 3 and puller.archive.complete_at(txn, col.state.id) == length
    for node in (source, puller):
        node.close()


def test_a_peer_holding_too_many_sync_sessions_is_refused_more(tmp_path, caplog):
    server, client = make(tmp_path, "server"), make(tmp_path, "client")
    col = collections.create(server, "stuff", "public")
    grants.share(server, col, client.peer_id)

    async def main() -> None:
        serving = P2P(server, ["/ip4/127.0.0.1/tcp/0"])
        serving.net = Network(server.identity.seed, ["/ip4/127.0.0.1/tcp/0"], serving.is_trusted)
        serving.net.handle(msg.SYNC_PROTOCOL, serving._serve_sync)
        net = Network(client.identity.seed, ["/ip4/127.0.0.1/tcp/0"], lambda p: True)
        async with trio.open_nursery() as n:
            addrs = await n.start(serving.net.serve)
            await n.start(net.serve)
            peers.add(server, client.peer_id, [], "client")
            serving._load_peers()
            addr = [addrs[0].rsplit("/p2p/", 1)[0]]

            async def heads(stream) -> dict:  # noqa: ANN001
                await stream.send(msg.encode("heads?"))
                frame = await stream.recv(msg.MAX_HEADS)
                return msg.decode(frame, msg.MAX_HEADS, ("heads", "error"))

            held = [await net.open(server.peer_id, addr, msg.SYNC_PROTOCOL) for _ in range(4)]
            for stream in held:  # four sessions, each served
                assert (await heads(stream))["cols"][0][0] == col.state.id
            assert serving.sessions == {client.peer_id: 4}
            extra = await net.open(server.peer_id, addr, msg.SYNC_PROTOCOL)
            with pytest.raises(msg.RemoteError, match="too many sessions"):
                await heads(extra)
            for stream in held:
                await stream.close()
            with trio.fail_after(10):
                while serving.sessions:  # the server sees each session end
                    await trio.sleep(0.01)
            again = await net.open(server.peer_id, addr, msg.SYNC_PROTOCOL)
            assert (await heads(again))["cols"][0][0] == col.state.id
            await again.close()
            n.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="amanah"):
        trio.run(main)
    assert any("refusing another" in r.getMessage() for r in caplog.records)
    for node in (server, client):
        node.close()
