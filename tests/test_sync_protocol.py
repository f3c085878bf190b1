"""The rules of `/amanah/sync/1` (SPEC.md section 11), on real node homes over in-memory streams.

Every session here is the real code on both sides (`sync_server.serve` and `replicate.Puller`) over
`memory_pair()`, the framed in-memory stream with the same size caps as the libp2p one. Covered:
forks (11.7), what a server may serve to whom (11.5), malformed requests (11.4), resuming a cut
transfer (11.8), and, as strict xfails, divergences that SPEC.md Appendix C lists.
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import cbor2
import lmdb
import pytest
import trio
from amanah.node import collections, grants, ingest, peers, replicate, sync_server
from amanah.node import identity as identity_mod
from amanah.node import items as items_mod
from amanah.node import store as store_mod
from amanah.node.home import Node, init_home
from amanah.node.net import FramedStream, NetError, memory_pair
from amanah.node.verify import verify_all
from amanah.protocol import cbor, ids, log
from amanah.protocol import item as item_mod
from amanah.protocol import sync as msg

DEADLINE = 30  # seconds for any one trio.run here; a hang fails the test instead of blocking
PW = "backup passphrase"
MiB = 1 << 20

# --- nodes ----------------------------------------------------------------------------------------


@pytest.fixture
def nodes(tmp_path: Path) -> Any:
    """A factory of real node homes (no passphrase: fast to open), closed after the test."""
    made: list[Node] = []

    def make(name: str, role: str = "partner", backup: identity_mod.Backup | None = None) -> Node:
        init_home(tmp_path / name, name, None, role, backup=backup)
        node = Node(tmp_path / name, lambda: None)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


@pytest.fixture(scope="module")
def owner_backup(tmp_path_factory: pytest.TempPathFactory) -> identity_mod.Backup:
    """One owner identity, written as a real (Argon2id-sealed) backup and read back."""
    path = tmp_path_factory.mktemp("backup") / "owner.backup"
    identity = identity_mod.Identity.generate()
    identity_mod.write_backup(path, identity_mod.Backup(identity, "owner", []), PW)
    return identity_mod.read_backup(path, PW)


def trust(a: Node, b: Node, role: str = "partner") -> None:
    peers.add(a, b.peer_id, ["/ip4/127.0.0.1/tcp/1"], b.name, role)


def add_file(node: Node, col_id: bytes, tmp: Path, size: int, name: str) -> bytes:
    """Ingest `size` random bytes into the collection; return the new item's id."""
    path = tmp / name
    path.write_bytes(os.urandom(size))
    info = collections.resolve(node, ids.to_text("col", col_id))
    added = ingest.add(node, info, ingest.gather([path]), {"title_en": name})[0]
    return ids.from_text(added.id, "itm")


def state_of(node: Node, col_id: bytes) -> log.CollectionState | None:
    with node.store.read() as txn:
        return node.archive.state(txn, col_id)


def raw_log(node: Node, col_id: bytes) -> list[bytes]:
    with node.store.read() as txn:
        return [bytes(raw) for _, raw in node.archive.raw_entries(txn, col_id)]


def entry_at(node: Node, col_id: bytes, seq: int) -> log.Entry:
    with node.store.read() as txn:
        return node.archive.entry(txn, col_id, seq)


def db_items(node: Node, name: str) -> list[tuple[bytes, bytes]]:
    with node.store.read() as txn:
        return [(bytes(k), bytes(v)) for k, v in txn.cursor(node.store.db[name])]


def block_ids(node: Node) -> set[bytes]:
    return {k[:-2] for k, _ in db_items(node, "blocks")}


def record_of(node: Node, item_id: bytes) -> item_mod.ItemRecord:
    with node.store.read() as txn:
        return item_mod.parse_record(bytes(txn.get(item_id, db=node.store.db["records"])))


# --- sessions -------------------------------------------------------------------------------------


def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    async def main() -> Any:
        with trio.fail_after(DEADLINE):
            return await fn(*args)

    return trio.run(main)


class Counting:
    """The puller's end of a stream, counting the requests it sends (and the blocks it asks for)."""

    def __init__(self, stream: FramedStream) -> None:
        self.stream = stream
        self.peer_id = stream.peer_id
        self.sent: Counter[str] = Counter()
        self.blocks: list[bytes] = []

    async def send(self, payload: bytes) -> None:
        request = cbor.decode(payload, len(payload))  # the server applies the real cap
        self.sent[request["t"]] += 1
        if request["t"] == "block?":
            self.blocks.append(request["id"])
        await self.stream.send(payload)

    async def recv(self, max_size: int) -> bytes:
        return await self.stream.recv(max_size)


Serve = Callable[[Node, FramedStream, bytes], Awaitable[None]]


async def _pull(
    puller: Node, server: Node, serve: Serve = sync_server.serve, only: list[bytes] | None = None
) -> tuple[replicate.Puller, Counting, BaseException | None]:
    mine, theirs = memory_pair((puller.peer_id, server.peer_id))
    counting = Counting(mine)
    session = replicate.Puller(puller, counting)
    error: BaseException | None = None

    async def server_side() -> None:
        try:
            await serve(server, theirs, puller.public_key)
        except NetError:
            pass  # the puller hung up on it mid-answer

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server_side)
        try:
            await session.run(only)
        except (replicate.PeerViolation, NetError) as exc:
            error = exc
        finally:
            await mine.close()
    return session, counting, error


def pull(
    puller: Node, server: Node, serve: Serve = sync_server.serve, only: list[bytes] | None = None
) -> tuple[replicate.Puller, Counting, BaseException | None]:
    """One sync session: the puller's session object (`.result`), its requests, what it raised."""
    return run(_pull, puller, server, serve, only)


def pull_ok(puller: Node, server: Node, only: list[bytes] | None = None) -> replicate.PullResult:
    session, _, error = pull(puller, server, only=only)
    assert error is None, f"pull failed: {error!r}"
    return session.result


async def _ask(server: Node, client_key: bytes, requests: tuple[bytes, ...]) -> list[dict]:
    mine, theirs = memory_pair((ids.peer_id_from_public_key(client_key), server.peer_id))
    replies = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync_server.serve, server, theirs, client_key)
        for request in requests:
            await mine.send(request)
            replies.append(cbor.decode(await mine.recv(msg.MAX_RESPONSE), msg.MAX_RESPONSE))
        await mine.close()
    return replies


def ask(server: Node, client_key: bytes, *requests: bytes) -> list[dict]:
    """Send raw requests to a real server session as the peer `client_key`; the decoded answers."""
    return run(_ask, server, client_key, requests)


# --- (a) forks ------------------------------------------------------------------------------------


def _fork(nodes: Any, tmp_path: Path, backup: identity_mod.Backup, theirs_extra: int) -> dict:
    """Two nodes with the same owner key each append a different item at position L.

    `a` and `a2` are both restored from the owner's backup; `h` is a holder both sync with (two
    nodes with one identity have one peer id and cannot connect to each other). The collection is
    created on `a`, reaches `a2` through `h`; then `a` appends X (and `theirs_extra` more entries),
    `h` pulls them, and `a2` appends Y at the same position as X.
    """
    a = nodes("a", backup=backup)
    h = nodes("h")
    a2 = nodes("a2", backup=backup)
    assert a.public_key == a2.public_key
    for x, y in [(a, h), (h, a), (a2, h)]:
        trust(x, y)
    col = collections.create(a, "cases", "public").state.id
    add_file(a, col, tmp_path, 1000, "common.bin")
    grants.share(a, collections.resolve(a, "cases"), h.peer_id)
    pull_ok(h, a)
    pull_ok(a2, h)
    at = state_of(a2, col).length
    add_file(a, col, tmp_path, 1000, "x.bin")
    for i in range(theirs_extra):
        add_file(a, col, tmp_path, 1000, f"x{i}.bin")
    pull_ok(h, a)
    add_file(a2, col, tmp_path, 1000, "y.bin")
    theirs, ours = entry_at(a, col, at), entry_at(a2, col, at)
    assert theirs.id != ours.id
    log.verify_entry(theirs, a.public_key)
    log.verify_entry(ours, a.public_key)
    return {"a": a, "h": h, "a2": a2, "col": col, "at": at, "theirs": theirs}


@pytest.mark.parametrize(
    "theirs_extra",
    [
        pytest.param(0, id="same-length"),
        pytest.param(1, id="peer-longer"),
    ],
)
def test_fork_is_refused_kept_as_evidence_and_reported(nodes, tmp_path, owner_backup, theirs_extra):
    f = _fork(nodes, tmp_path, owner_backup, theirs_extra)
    a2, col, at, theirs = f["a2"], f["col"], f["at"], f["theirs"]
    before = raw_log(a2, col)
    session, _, error = pull(a2, f["h"])
    assert isinstance(error, replicate.PeerViolation)
    assert any(f"position {at}:" in text for text in session.result.forks), session.result.forks
    key = col + at.to_bytes(8, "big") + theirs.id
    assert (key, theirs.raw) in db_items(a2, "forks")
    assert raw_log(a2, col) == before
    assert verify_all(a2).ok


def test_fork_from_a_longer_branch_is_refused_and_owner_signed_evidence_kept(
    nodes, tmp_path, owner_backup
):
    """What the reference does today on a longer conflicting branch (weaker than the test above):
    refuse it, keep an owner-signed entry of it, report, leave our log as it was."""
    f = _fork(nodes, tmp_path, owner_backup, theirs_extra=1)
    a2, col = f["a2"], f["col"]
    before = raw_log(a2, col)
    session, _, error = pull(a2, f["h"])
    assert isinstance(error, replicate.PeerViolation)
    assert "fork" in str(error)
    assert session.result.forks
    kept = db_items(a2, "forks")
    assert kept
    for key, raw in kept:
        entry = log.parse_entry(raw)
        assert key == col + entry.seq.to_bytes(8, "big") + entry.id
        log.verify_entry(entry, a2.public_key)  # evidence is owner-signed, not garbage
        assert raw not in before
    assert raw_log(a2, col) == before
    assert state_of(a2, col).head == log.parse_entry(before[-1]).id
    assert verify_all(a2).ok
    # a second attempt "resolves" nothing either
    _, _, again = pull(a2, f["h"])
    assert isinstance(again, replicate.PeerViolation)
    assert raw_log(a2, col) == before


@pytest.mark.parametrize("answer", ["other-position", "other-collection", "our-own"])
def test_a_false_fork_claim_is_a_violation_and_keeps_nothing(nodes, tmp_path, answer):
    """A trusted peer announces a head that differs from ours, then answers the fork search
    with owner-signed entries that prove nothing: no alarm is raised, no evidence kept."""
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "cases", "public").state.id
    for i in range(5):
        add_file(a, col, tmp_path, 1000, f"{i}.bin")
    other = collections.create(a, "other", "public").state.id
    for i in range(5):
        add_file(a, other, tmp_path, 1000, f"o{i}.bin")
    grants.share(a, collections.resolve(a, "cases"), b.peer_id)
    pull_ok(b, a)
    length = state_of(b, col).length

    async def lying(server: Node, stream: FramedStream, peer: bytes) -> None:
        honest = sync_server.Server(server, peer)
        while frame := await stream.recv(msg.MAX_REQUEST):
            request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
            if request["t"] == "heads?":
                fake = [[col, length, ids.sha256_id(b"not the head"), True]]
                await stream.send(msg.encode("heads", cols=fake))
                continue
            if request["t"] == "log?" and answer != "our-own":
                seq = 1 if answer == "other-position" else request["from"]
                raw = entry_at(a, col if answer == "other-position" else other, seq).raw
                await stream.send(
                    msg.encode("entries", col=col, entries=[raw], **{"from": request["from"]})
                )
                continue
            for reply in honest.answer(request):
                await stream.send(reply)

    before = raw_log(b, col)
    session, _, error = pull(b, a, serve=lying)
    assert isinstance(error, replicate.PeerViolation), error
    assert not isinstance(error, replicate.ForkDetected)
    assert "position" in str(error)
    assert session.result.forks == [] and db_items(b, "forks") == []
    assert raw_log(b, col) == before and verify_all(b).ok


# --- (b) what a server serves to whom -------------------------------------------------------------


def _blocks_of(node: Node, item_id: bytes) -> list[bytes]:
    return list(record_of(node, item_id).inline_blocks())


def test_server_serves_only_what_the_log_grants(nodes, tmp_path):
    a, p, s, m = nodes("a"), nodes("p"), nodes("s"), nodes("m", role="mirror")
    for peer in (p, s, m):
        trust(a, peer)  # m is a partner for now
    made = {}
    for name, tier in [("granted", "public"), ("other", "public"), ("closed", "closed")]:
        made[name] = collections.create(a, name, tier).state.id
    items = {name: add_file(a, col, tmp_path, 3000, f"{name}.bin") for name, col in made.items()}
    grants.share(a, collections.resolve(a, "granted"), p.peer_id)
    # m holds "closed" and "other" (hold grants made while a saw it as a partner), then a learns
    # that m is a mirror: from then on only public collections with a mirror grant reach it
    grants.share(a, collections.resolve(a, "closed"), m.peer_id)
    grants.share(a, collections.resolve(a, "other"), m.peer_id)
    trust(a, m, role="mirror")
    made["mirrored"] = collections.create(a, "mirrored", "public").state.id
    items["mirrored"] = add_file(a, made["mirrored"], tmp_path, 3000, "mirrored.bin")
    grants.share(a, collections.resolve(a, "mirrored"), m.peer_id)
    assert state_of(a, made["mirrored"]).grants[m.public_key] == "mirror"
    blocks = {name: _blocks_of(a, i)[0] for name, i in items.items()}

    def served(client: Node, name: str) -> bool:
        """Everything of collection `name` that `client` can get, asking directly by id."""
        col, item, block = made[name], items[name], blocks[name]
        got = ask(
            a,
            client.public_key,
            msg.encode("heads?"),
            msg.encode("log?", col=col, limit=512, **{"from": 0}),
            msg.encode("log?", col=col, limit=512, **{"from": 1}),
            msg.encode("records?", ids=[item]),
            msg.encode("block?", item=item, id=block),
        )
        listed = col in [h[0] for h in got[0]["cols"]]
        parts = [listed, got[1]["entries"], got[2]["entries"], got[3]["records"][0], got[4]["data"]]
        assert all(parts) or not any(parts), f"{name} half-served to {client.name}: {parts}"
        if listed:
            assert got[1]["entries"] == raw_log(a, col)
        return listed

    assert [n for n in made if served(p, n)] == ["granted"]
    assert [n for n in made if served(s, n)] == []  # trusted, granted nothing
    assert [n for n in made if served(m, n)] == ["mirrored"]  # not "closed", not "other"

    # A block is sent only through an item that lists it and that the peer may fetch.
    g, o = items["granted"], items["other"]
    got = ask(
        a,
        p.public_key,
        msg.encode("block?", item=g, id=blocks["other"]),  # granted item, another item's block
        msg.encode("block?", item=o, id=blocks["other"]),  # the right item, not granted
        msg.encode("block?", item=ids.sha256_id(b"no such item"), id=blocks["other"]),
        msg.encode("block?", item=g, id=blocks["granted"]),  # control: this one is served
        msg.encode("records?", ids=[o, g, ids.sha256_id(b"no such item")]),
    )
    assert [r["data"] for r in got[:3]] == [None, None, None]
    assert ids.sha256_id(got[3]["data"]) == blocks["granted"]
    records = got[4]["records"]
    assert records[0] is None and records[2] is None
    assert ids.sha256_id(records[1]) == g

    # "have" is recorded only for collections the peer is served
    state = state_of(a, made["granted"])
    heads = [[made[n], 1, made[n], False] for n in ("other", "closed")]
    heads.append([state.id, state.length, state.head, True])
    assert ask(a, p.public_key, msg.encode("have", cols=heads)) == [{"t": "ok"}]
    assert [k for k, _ in db_items(a, "peerstate")] == [made["granted"] + p.public_key]

    # A peer taken off the allow-list gets nothing, whatever the log grants it.
    peers.remove(a, p.peer_id)
    assert not served(p, "granted")


def test_ungranted_puller_stores_nothing(nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "private", "closed").state.id
    add_file(a, col, tmp_path, 3000, "x.bin")
    session, sent, error = pull(b, a)
    assert error is None
    assert session.result.collections == 0
    assert sent.sent == Counter({"heads?": 1})  # nothing listed, nothing asked, no "have"
    assert db_items(b, "cols") == [] and block_ids(b) == set()


# --- (c) malformed requests -----------------------------------------------------------------------

SOME_ID = ids.sha256_id(b"some collection")


def _canonical(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


MALFORMED = [
    pytest.param(b"\xff", id="garbage"),
    pytest.param(msg.encode("heads?") + b"\x00", id="trailing-byte"),
    pytest.param(_canonical(["heads?"]), id="not-a-map"),
    pytest.param(msg.encode("gossip?"), id="unknown-type"),
    pytest.param(msg.encode("heads", cols=[]), id="a-response"),
    pytest.param(msg.encode("error", msg="boo"), id="an-error"),
    pytest.param(msg.encode("heads?", x=1), id="heads?-extra-field"),
    pytest.param(msg.encode("heads?", after=b"\x12\x20" + bytes(31)), id="heads?-bad-after"),
    pytest.param(msg.encode("log?", col=SOME_ID, **{"from": 0}), id="missing-field"),
    pytest.param(msg.encode("log?", col=SOME_ID, limit=513, **{"from": 0}), id="limit-513"),
    pytest.param(
        msg.encode("log?", col=b"\x12\x21" + bytes(32), limit=1, **{"from": 0}), id="bad-id"
    ),
    pytest.param(msg.encode("records?", ids=[SOME_ID] * 257), id="257-ids"),
    pytest.param(msg.encode("have", cols=[[SOME_ID, 0, SOME_ID, True]]), id="have-length-0"),
    pytest.param(
        msg.encode("have", cols=[[SOME_ID, 2**63 + 1, SOME_ID, True]]), id="have-length-2^63+1"
    ),
    pytest.param(b"\xa0" * (msg.MAX_REQUEST + 1), id="oversized"),
    pytest.param(
        msg.encode("log?", col=SOME_ID, limit=1, x=1, **{"from": 0}),
        id="log?-extra-field",
    ),
]


@pytest.fixture(scope="module")
def owner_and_holder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One owner serving a public collection to one holder, shared by the malformed-request
    tests (each of them leaves both as they were, or fails)."""
    tmp = tmp_path_factory.mktemp("pair")
    made = []
    for name in ("a", "b"):
        init_home(tmp / name, name, None)
        made.append(Node(tmp / name, lambda: None))
    a, b = made
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "pub", "public").state.id
    add_file(a, col, tmp, 1000, "x.bin")
    grants.share(a, collections.resolve(a, "pub"), b.peer_id)
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("frame", MALFORMED)
def test_malformed_request_ends_its_session_only(owner_and_holder, frame):
    a, b = owner_and_holder

    async def main() -> tuple[list[bytes], object, tuple]:
        mine, theirs = memory_pair((b.peer_id, a.peer_id))
        answers: list[bytes] = []
        ended: list[object] = []

        async def bad_session() -> None:
            # as the host runs a handler: close the stream when it returns, reset it if it raised
            try:
                await sync_server.serve(a, theirs, b.public_key)
                ended.append("returned")
                await theirs.close()
            except NetError as exc:  # a framing violation: the stream was reset
                ended.append(exc)
                await theirs.reset()
            # anything else propagates and fails the test: the server must not crash

        async def honest_session() -> None:
            honest.append(await _pull(b, a))

        honest: list[tuple] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bad_session)
            nursery.start_soon(honest_session)  # the same peer, at the same time, behaving
            try:
                await mine.send(frame)
                while answer := await mine.recv(msg.MAX_RESPONSE):
                    answers.append(answer)
                    if cbor.decode(answer, msg.MAX_RESPONSE)["t"] != "error":
                        break  # answered as if valid: the assertions below fail
            except NetError:
                pass
            await mine.close()
        return answers, ended[0], honest[0]

    answers, ended, (session, _, error) = run(main)
    assert ended == "returned" or isinstance(ended, NetError)
    assert len(answers) <= 1  # at most one answer, then the server ended the session
    for answer in answers:
        reply = cbor.decode(answer, msg.MAX_RESPONSE)
        assert reply["t"] == "error" and isinstance(reply["msg"], str)
    assert error is None  # the honest session beside it went through
    with a.store.read() as txn:
        (col,) = [state.id for state in a.archive.states(txn)]
    assert raw_log(b, col) == raw_log(a, col)
    assert verify_all(b).ok


# --- (d) resuming a cut transfer ------------------------------------------------------------------


async def _requests(stream: FramedStream) -> AsyncIterator[tuple[dict, int]]:
    """Each request the puller sends, with the number of `block?` requests so far."""
    blocks = 0
    while frame := await stream.recv(msg.MAX_REQUEST):
        request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
        blocks += request["t"] == "block?"
        yield request, blocks


def _cut_after(answered: int, asked: int) -> Serve:
    """A real server session that answers the first `answered` block requests, reads `asked`
    block requests in all (so the puller is not still sending), then hangs up."""

    async def serve(node: Node, stream: FramedStream, peer_key: bytes) -> None:
        server = sync_server.Server(node, peer_key)
        async for request, blocks in _requests(stream):
            if blocks <= answered:
                for response in server.answer(request):
                    await stream.send(response)
            if blocks == asked:
                await stream.close()
                return

    return serve


def _nine_blocks_shared(nodes: Any, tmp_path: Path) -> tuple[Node, Node, list[bytes]]:
    """a owns a closed collection "closed" with one 8 MiB + 5 B item, shared with b; the item's
    nine block ids in the order b asks for them."""
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "closed", "closed").state.id
    item = add_file(a, col, tmp_path, 8 * MiB + 5, "big.bin")
    grants.share(a, collections.resolve(a, "closed"), b.peer_id)
    order = _blocks_of(a, item)
    assert len(order) == 9
    return a, b, order


def test_a_corrupt_block_is_refused_and_the_good_ones_before_it_kept(nodes, tmp_path, monkeypatch):
    """All nine blocks travel in one storing batch; the fourth is corrupted: the three before
    it are stored (a resumed pull skips them), it and those after are not."""
    monkeypatch.setattr(replicate, "SMALL_BLOCK", 0)  # one block? per block
    a, b, order = _nine_blocks_shared(nodes, tmp_path)

    async def corrupt_fourth(node: Node, stream: FramedStream, peer_key: bytes) -> None:
        server = sync_server.Server(node, peer_key)
        async for request, blocks in _requests(stream):
            for response in server.answer(request):
                if request["t"] == "block?" and blocks == 4:
                    response = response[:-1] + bytes([response[-1] ^ 1])
                await stream.send(response)

    _, _, error = pull(b, a, serve=corrupt_fourth)
    assert isinstance(error, replicate.PeerViolation) and "does not match its id" in str(error)
    assert block_ids(b) == set(order[:3])
    assert verify_all(b).ok or all("missing" in d.problem for d in verify_all(b).damaged)
    pull_ok(b, a)
    assert block_ids(b) == set(order) and verify_all(b).ok


def test_cut_transfer_resumes_without_refetching_stored_blocks(nodes, tmp_path, monkeypatch):
    # Commit every block as it arrives (the reference commits every 16 MiB): what is stored
    # before the cut must not be asked for again.
    monkeypatch.setattr(replicate, "BLOCK_BATCH_BYTES", 1)
    monkeypatch.setattr(replicate, "SMALL_BLOCK", 0)  # one block? per block, to count them
    a, b, order = _nine_blocks_shared(nodes, tmp_path)
    col = collections.resolve(a, "closed").state.id
    wanted = set(order)

    first, sent1, error = pull(b, a, serve=_cut_after(4, len(wanted)))
    assert isinstance(error, replicate.PeerViolation)
    assert sent1.sent["log?"] == 1 and sent1.sent["records?"] == 1
    stored = block_ids(b)
    assert stored < wanted and len(stored) == 4  # what arrived before the cut is kept
    assert first.result.blocks == len(stored)
    with b.store.read() as txn:
        assert b.archive.complete_at(txn, col) != state_of(b, col).length

    second, sent2, error = pull(b, a)
    assert error is None
    assert sent2.sent["log?"] == sent2.sent["records?"] == 0  # log and record were kept
    assert sorted(sent2.blocks) == sorted(wanted - stored)  # only what is missing
    assert sent2.sent["block?"] == len(wanted) - len(stored)
    assert block_ids(b) == wanted
    assert verify_all(b).ok
    with b.store.read() as txn:
        assert b.archive.complete_at(txn, col) == state_of(b, col).length
    third, sent3, error = pull(b, a)
    assert error is None and sent3.sent["block?"] == 0 and third.result.collections == 0


# --- item ids named by more than one log (SPEC 11.6.3 step 4) and bounded messages ----------------


def test_a_log_naming_anothers_item_does_not_block_that_collection(nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    victim = collections.create(a, "victim", "public").state.id
    item = add_file(a, victim, tmp_path, 1000, "evidence.bin")
    other = collections.create(a, "other", "public").state.id
    for name in ("victim", "other"):
        grants.share(a, collections.resolve(a, name), b.peer_id)
    # "other"'s owner (any owner whose collection b holds, not necessarily the victim's) names
    # the victim's item id, which every holder of the victim's log can read.
    with a.store.write() as txn:
        state = a.archive.require(txn, other)
        a.archive.append(txn, state, a.identity, "item", collections.now_ms(), item=item)
    pull(b, a, only=[other])  # refused or not: the owner of "other" signed nonsense
    pull_ok(b, a, only=[victim])
    assert state_of(b, victim).length == state_of(a, victim).length
    assert verify_all(b).ok or all("other" not in d.problem for d in verify_all(b).damaged)


def _foreign_listing(nodes: Any, tmp_path: Path) -> tuple[Node, Node, bytes, bytes, bytes]:
    """a owns "victim" (one item) and "other", both public and shared with b; "other"'s log
    names the victim's item. Another owner could do the same: only the log's signer counts."""
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    victim = collections.create(a, "victim", "public").state.id
    item = add_file(a, victim, tmp_path, 3 * MiB, "evidence.bin")
    other = collections.create(a, "other", "public").state.id
    for name in ("victim", "other"):
        grants.share(a, collections.resolve(a, name), b.peer_id)
    _append(a, other, "item", item=item)
    return a, b, victim, other, item


def _append(node: Node, col: bytes, type_: str, **fields: Any) -> None:
    """The owner appends an entry to its log directly (the CLI would refuse these)."""
    with node.store.write() as txn:
        state = node.archive.require(txn, col)
        node.archive.append(txn, state, node.identity, type_, collections.now_ms(), **fields)


def test_a_redaction_in_another_log_does_not_hide_the_item(nodes, tmp_path):
    a, b, victim, other, item = _foreign_listing(nodes, tmp_path)
    _append(a, other, "redact", item=item, reason="hidden by another owner")
    # b learns "other" first (its log sorts first or was shared first): the naming and the
    # redaction are stored, as SPEC 4.11.3 allows, but they are "other"'s alone
    pull_ok(b, a, only=[other])
    assert state_of(b, other).length == state_of(a, other).length
    result = pull_ok(b, a, only=[victim])
    assert result.records == 1 and result.invalid == []
    path, _ = items_mod.get(b, ids.to_text("itm", item), str(tmp_path / "out"))
    assert path.read_bytes() == (tmp_path / "evidence.bin").read_bytes()
    assert verify_all(b).ok
    with b.store.read() as txn:
        assert items_mod.redaction(b, txn, other, item) is not None
        assert items_mod.redaction(b, txn, victim, item) is None
    # and a second redaction of it in "other" is refused: it is redacted there already
    _append(a, other, "redact", item=item, reason="again")
    before = state_of(b, other).length
    _, _, error = pull(b, a, only=[other])
    assert isinstance(error, replicate.PeerViolation) and "already redacted" in str(error)
    assert state_of(b, other).length == before


def test_a_redaction_in_another_log_held_after_the_item_leaves_it_alone(nodes, tmp_path):
    a, b, victim, other, item = _foreign_listing(nodes, tmp_path)
    pull_ok(b, a, only=[victim])  # b holds the item, in its home, first
    _append(a, other, "redact", item=item, reason="hidden by another owner")
    pull_ok(b, a, only=[other])
    blocks = block_ids(b)
    assert record_of(b, item).collection == victim and blocks
    assert verify_all(b).ok
    _, summary = items_mod.get(b, ids.to_text("itm", item), str(tmp_path / "out"))
    assert summary


@pytest.mark.parametrize("home_first", [False, True], ids=["foreign-first", "home-first"])
def test_a_log_naming_the_same_foreign_item_twice_is_refused(nodes, tmp_path, home_first):
    a, b, victim, other, item = _foreign_listing(nodes, tmp_path)
    first, second = (victim, other) if home_first else (other, victim)
    pull_ok(b, a, only=[first])
    pull_ok(b, a, only=[second])  # the record arrives: the item's home is the victim
    _append(a, other, "item", item=item)
    before = raw_log(b, other)
    _, _, error = pull(b, a, only=[other])
    assert isinstance(error, replicate.PeerViolation) and "added twice" in str(error)
    assert raw_log(b, other) == before  # nothing of the range stored
    assert verify_all(b).ok


def test_a_batch_entry_replicates_and_one_naming_an_item_again_is_refused(nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    info = collections.create(a, "batch", "public")
    col = info.state.id
    files = []
    for i in range(5):
        files.append(tmp_path / f"d{i}.txt")
        files[-1].write_bytes(os.urandom(1_000 + i))
    added = ingest.add(a, info, ingest.gather(files), {"title_en": "batch"})
    grants.share(a, collections.resolve(a, "batch"), b.peer_id)
    assert state_of(a, col).length == 3  # genesis, one entry naming the five, the grant
    named = log.named_items(entry_at(a, col, 1).body)
    assert [ids.to_text("itm", i) for i in named] == [x.id for x in added]
    result = pull_ok(b, a)
    assert (result.entries, result.records) == (3, 5) and verify_all(b).ok
    for x, f in zip(added, files, strict=True):
        path, _ = items_mod.get(b, x.id, str(tmp_path / "out"))
        assert path.read_bytes() == f.read_bytes()
        path.unlink()
    # The owner's next batch names a new item and one of the five again: refused whole.
    fresh = ids.sha256_id(b"never stored")
    _append(a, col, "item", items=[fresh, named[2]])
    before = raw_log(b, col)
    _, _, error = pull(b, a)
    assert isinstance(error, replicate.PeerViolation) and "added twice" in str(error)
    assert raw_log(b, col) == before
    with b.store.read() as txn:
        assert txn.get(fresh, db=b.store.db["items"]) is None  # nothing of the entry kept
    assert verify_all(b).ok


def test_a_redaction_of_an_item_its_log_never_named_is_refused(nodes, tmp_path):
    a, b, victim, other, item = _foreign_listing(nodes, tmp_path)
    third = collections.create(a, "third", "public").state.id
    grants.share(a, collections.resolve(a, "third"), b.peer_id)
    _append(a, third, "redact", item=item, reason="never listed here")
    pull_ok(b, a, only=[victim])
    _, _, error = pull(b, a, only=[third])
    assert isinstance(error, replicate.PeerViolation) and "not in this collection" in str(error)
    assert state_of(b, third) is None
    _, summary = items_mod.get(b, ids.to_text("itm", item), str(tmp_path / "out"))
    assert summary


def _big_metadata() -> dict:
    # 16,100 Arabic letters are 32,200 bytes of UTF-8: metadata near its 32,768-byte cap
    return {"title_en": "t" * 300, "description_ar": "\u0628" * 16_100}


def test_records_answer_fits_its_cap(nodes, tmp_path):
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    collections.create(a, "described", "public")
    folder = tmp_path / "files"
    folder.mkdir()
    for i in range(msg.RECORDS_PER_REQUEST):
        (folder / f"{i}.txt").write_bytes(i.to_bytes(2, "big"))
    info = collections.resolve(a, "described")
    added = ingest.add(a, info, ingest.gather([folder]), _big_metadata())
    sizes = [len(record_of(a, ids.from_text(x.id, "itm")).raw) for x in added]
    assert sum(sizes) > msg.MAX_RECORDS_RESPONSE  # the premise: one batch does not fit
    grants.share(a, info, b.peer_id)
    result = pull_ok(b, a)
    assert result.records == msg.RECORDS_PER_REQUEST


def test_have_fits_the_request_cap_with_many_collections(nodes, monkeypatch):
    monkeypatch.setattr(store_mod.lmdb, "open", functools.partial(lmdb.open, sync=False))  # speed
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    count = 900
    with a.store.write() as txn:  # 900 public collections granted to b, in one transaction
        for i in range(count):
            genesis = log.genesis(
                a.identity.signing_key, f"c{i}", "public", collections.now_ms(), os.urandom(16)
            )
            state = a.archive.create(txn, genesis)
            a.archive.append(txn, state, a.identity, "grant", 0, peer=b.public_key, role="hold")
    # b already holds them all (copied in one transaction: pulling 900 collections is slow),
    # so the session is heads, nothing to fetch, then "have" in messages that fit the request cap
    with a.store.read() as source, b.store.write() as txn:
        for state in a.archive.states(source):
            genesis, grant = (a.archive.entry(source, state.id, seq) for seq in (0, 1))
            copy = b.archive.create(txn, genesis)
            b.archive.append_entry(txn, copy, grant)
            b.archive.mark_complete(txn, copy.id, copy.length)
    with b.store.read() as txn:  # the premise: one "have" naming all 900 would not fit
        heads = [[s.id, s.length, s.head, True] for s in b.archive.states(txn)]
    assert len(msg.encode("have", cols=heads)) > msg.MAX_REQUEST
    session, sent, error = pull(b, a)
    assert error is None, error
    pages = -(-count // replicate.HAVE_PER_MESSAGE)
    assert pages > 1 and sent.sent == Counter({"heads?": 1, "have": pages})
    with a.store.read() as txn:  # and the server recorded every one of them
        assert sum(1 for _ in txn.cursor(a.store.db["peerstate"])) == count


def test_redaction_received_keeps_blocks_other_items_use(nodes, tmp_path, monkeypatch):
    # Items of more than 2 blocks list manifests of 3 ids (instead of 256 and 1,024): manifests
    # without 257 MiB files, as in test_node_ingest.py.
    monkeypatch.setattr(item_mod, "INLINE_BLOCKS", 2)
    monkeypatch.setattr(item_mod, "MANIFEST_FANOUT", 3)
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    collections.create(a, "pub", "public")
    shared = os.urandom(MiB)  # the first chunk of both files: one public block, used twice
    for name in ("one", "two"):
        (tmp_path / name).write_bytes(shared + os.urandom(2 * MiB))
    info = collections.resolve(a, "pub")
    one, two = (
        ids.from_text(ingest.add(a, info, ingest.gather([tmp_path / n]), {})[0].id, "itm")
        for n in ("one", "two")
    )
    assert record_of(a, one).manifest_ids() and ids.sha256_id(shared) in block_ids(a)
    grants.share(a, info, b.peer_id)
    pull_ok(b, a)
    assert verify_all(b).ok
    assert db_items(b, "refs") == db_items(a, "refs")  # SPEC 10.2: the same items, same counts
    from amanah.node import redact

    redact.redact(a, ids.to_text("itm", one), "duplicate")
    assert verify_all(a).ok  # the owner kept the shared block: "two" still uses it
    # b deletes the shared block with "one", then fetches it again for "two" (if the peer has it)
    assert pull_ok(b, a).blocks == 0
    assert db_items(b, "refs") == db_items(a, "refs")
    assert verify_all(b).ok


def test_small_blocks_travel_together_and_a_capped_answer_is_completed(
    nodes, tmp_path, monkeypatch
):
    """Small blocks are asked for with blocks? (hundreds per round trip); an answer cut short by
    its cap leaves the rest to be asked for again, and every block still arrives verified."""
    monkeypatch.setattr(msg, "MAX_BLOCKS_RESPONSE", 4096 * 3 + 4096)  # about 3 blocks an answer
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "docs", "closed").state.id
    items = [add_file(a, col, tmp_path, 4096, f"d{i}.bin") for i in range(20)]
    grants.share(a, collections.resolve(a, "docs"), b.peer_id)
    session, sent, error = pull(b, a)
    assert error is None
    assert sent.sent["block?"] == 0 and sent.sent["blocks?"] >= 20 // 3
    wanted = {blk for i in items for blk in _blocks_of(a, i)}
    assert block_ids(b) == wanted
    assert verify_all(b).ok


def test_heads_are_paged_and_a_page_never_lists_what_the_peer_may_not_fetch(
    nodes, tmp_path, monkeypatch
):
    monkeypatch.setattr(msg, "HEADS_PER_RESPONSE", 2)
    a, b, c = nodes("a"), nodes("b"), nodes("c")
    trust(a, b)
    trust(b, a)
    trust(a, c)
    made = [collections.create(a, f"c{i}", "public").state.id for i in range(7)]
    shared = sorted(made)[1::2] + sorted(made)[:1]  # 4 of 7, so pages skip the others
    for col in shared:
        grants.share(a, collections.resolve(a, ids.to_text("col", col)), b.peer_id)
    session, sent, error = pull(b, a)
    assert error is None, error
    assert sent.sent["heads?"] == 2  # pages of 2 and 2; the second says no more follow
    with b.store.read() as txn:
        assert sorted(s.id for s in b.archive.states(txn)) == sorted(shared)
    # each page is ascending, after the id asked, and lists only what b may fetch
    first, second = ask(a, b.public_key, msg.encode("heads?"), msg.encode("heads?", after=made[0]))
    assert [h[0] for h in first["cols"]] == sorted(shared)[:2] and first["more"] is True
    assert all(h[0] > made[0] for h in second["cols"])
    assert all(h[0] in shared for h in second["cols"])
    # a peer granted nothing sees an empty page, with no hint of more
    (none,) = ask(a, c.public_key, msg.encode("heads?"))
    assert none == {"t": "heads", "cols": []}


@pytest.mark.parametrize(
    "page",
    [
        pytest.param({"more": True, "cols": []}, id="more-without-heads"),
        pytest.param({"more": False}, id="more-false"),
        pytest.param({"order": "descending"}, id="descending"),
        pytest.param({"more": True, "repeat": True}, id="second-page-goes-back"),
    ],
)
def test_a_server_paging_heads_wrongly_is_a_violation(nodes, tmp_path, page):
    a, b = nodes("a"), nodes("b")
    trust(a, b)
    trust(b, a)
    made = sorted(collections.create(a, f"c{i}", "public").state.id for i in range(2))
    for col in made:
        grants.share(a, collections.resolve(a, ids.to_text("col", col)), b.peer_id)

    async def lying(server: Node, stream: FramedStream, peer: bytes) -> None:
        honest = sync_server.Server(server, peer)
        while frame := await stream.recv(msg.MAX_REQUEST):
            request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
            if request["t"] != "heads?":
                for answer in honest.answer(request):
                    await stream.send(answer)
                continue
            (real,) = honest.answer({"t": "heads?"})
            cols = msg.decode(real, msg.MAX_HEADS, ("heads",))["cols"]
            if page.get("order") == "descending":
                cols = cols[::-1]
            fields = {"cols": page.get("cols", cols)}
            if "more" in page:
                fields["more"] = page["more"]
            await stream.send(msg.encode("heads", **fields))

    _, _, error = pull(b, a, serve=lying)
    assert isinstance(error, replicate.PeerViolation), error
    if page.get("repeat"):
        assert "goes back" in str(error)
    else:
        assert "heads" in str(error) or "more" in str(error)


def test_a_revoked_peer_learns_only_the_log_and_a_mirror_nothing_of_a_non_public_one(
    nodes, tmp_path
):
    a, p, m = nodes("a"), nodes("p"), nodes("m", role="mirror")
    trust(a, p)
    trust(a, m)  # m is a partner for now
    made = {tier: collections.create(a, tier, tier).state.id for tier in ("public", "trusted")}
    for tier, col in made.items():
        add_file(a, col, tmp_path, 3000, f"{tier}.bin")
        for peer in (p, m):
            info = collections.resolve(a, tier)
            grants.share(a, info, peer.peer_id)
            grants.unshare(a, collections.resolve(a, tier), peer.peer_id)
    trust(a, m, role="mirror")  # then a learns that m is a mirror

    def learns(peer: Node) -> dict[str, tuple[bool, int]]:
        out = {}
        for tier, col in made.items():
            heads, entries = ask(
                a,
                peer.public_key,
                msg.encode("heads?"),
                msg.encode("log?", col=col, limit=512, **{"from": 0}),
            )
            out[tier] = (col in [h[0] for h in heads["cols"]], len(entries["entries"]))
        return out

    length = {tier: state_of(a, col).length for tier, col in made.items()}
    # p learns both logs, to the revocation (it must learn it was revoked), and nothing else
    assert learns(p) == {tier: (True, length[tier]) for tier in made}
    # the mirror learns the public log (a revoked mirror must stop publishing), never the other
    assert learns(m) == {"public": (True, length["public"]), "trusted": (False, 0)}
    record_ids = [i for i, _ in db_items(a, "records")]
    for peer in (p, m):  # and no records (nor, through them, blocks)
        (records,) = ask(a, peer.public_key, msg.encode("records?", ids=record_ids))
        assert records["records"] == [None] * len(record_ids)


def test_a_block_listed_in_a_manifest_that_arrives_mid_session_is_then_served(
    nodes, tmp_path, monkeypatch
):
    """A server still pulling an item itself: a block listed only in a manifest it lacks is
    answered null, and served once that manifest has arrived, in the same session."""
    monkeypatch.setattr(item_mod, "INLINE_BLOCKS", 2)
    monkeypatch.setattr(item_mod, "MANIFEST_FANOUT", 3)
    from tests.nodeutil import distinct_chunks

    a, s, b = nodes("a"), nodes("s"), nodes("b")
    for x, y in [(s, a), (a, s), (s, b)]:
        trust(x, y)
    collections.create(a, "big", "public")
    path = tmp_path / "seven.bin"
    distinct_chunks(path, 7)  # 7 blocks: 3 manifests of 3, 3 and 1
    info = collections.resolve(a, "big")
    item = ids.from_text(ingest.add(a, info, ingest.gather([path]), {})[0].id, "itm")
    for peer in (s, b):
        grants.share(a, collections.resolve(a, "big"), peer.peer_id)
    pull_ok(s, a)
    record = record_of(s, item)
    last = record.manifest_ids()[-1]
    with s.store.read() as txn:
        listed = item_mod.decode_manifest(bytes(s.blobs.get(txn, last)), 1)
    key = last + b"\0\0"  # the LMDB blob backend's key of a block's first fragment
    with s.store.write() as txn:  # s has not received that manifest yet
        saved = txn.pop(key, db=s.store.db["blocks"])
    server = sync_server.Server(s, b.public_key)

    def block(block_id: bytes) -> bytes | None:
        (frame,) = server.answer({"t": "block?", "item": item, "id": block_id})
        return msg.decode(frame, msg.MAX_BLOCK_RESPONSE, ("block",))["data"]

    assert block(record.manifest_ids()[0]) is not None  # the item's list is cached now
    assert block(listed[0]) is None
    with s.store.write() as txn:
        txn.put(key, saved, db=s.store.db["blocks"])
    data = block(listed[0])
    assert data is not None and ids.sha256_id(data) == listed[0]
