"""Replication logic over an in-memory stream pair (fast; the libp2p transport is tested apart).

Two real nodes (real LMDB homes); only the wire between them is a trio memory channel.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from amanah.node import collections, grants, ingest, items, peers, replicate, sync_server
from amanah.node.home import Node, init_home
from amanah.node.verify import verify_all
from amanah.protocol import ids, log
from amanah.protocol import sync as msg

PW = "pw"


class MemStream:
    def __init__(
        self, peer_id: str, send: trio.MemorySendChannel, recv: trio.MemoryReceiveChannel
    ) -> None:
        self.peer_id = peer_id
        self._send, self._recv = send, recv
        self.sent: list[bytes] = []

    async def send(self, payload: bytes) -> None:
        self.sent.append(payload)
        await self._send.send(payload)

    async def recv(self, max_size: int) -> bytes:
        try:
            frame = await self._recv.receive()
        except trio.EndOfChannel:
            return b""
        assert len(frame) <= max_size, "oversized frame"
        return frame

    async def close(self) -> None:
        await self._send.aclose()


def pair(a_id: str, b_id: str) -> tuple[MemStream, MemStream]:
    s1, r1 = trio.open_memory_channel(64)
    s2, r2 = trio.open_memory_channel(64)
    # stream seen by A talks to B (peer_id = B), and vice versa
    return MemStream(b_id, s1, r2), MemStream(a_id, s2, r1)


def make_node(tmp: Path, name: str, role: str = "partner") -> Node:
    init_home(tmp / name, name, PW, role)
    return Node(tmp / name, lambda: PW)


def trust(a: Node, b: Node, role: str = "partner") -> None:
    peers.add(a, b.peer_id, ["/ip4/127.0.0.1/tcp/1"], b.name, role)


async def pull(puller: Node, server: Node) -> replicate.PullResult:
    to_server, to_puller = pair(server.peer_id, puller.peer_id)
    # to_server: used by the puller (its peer is the server); to_puller: used by the server
    async with trio.open_nursery() as n:
        n.start_soon(sync_server.serve, server, to_puller, puller.public_key)
        try:
            result = await replicate.Puller(puller, to_server).run()
        finally:
            await to_server.close()
    return result


@pytest.fixture
def two(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    trust(a, b)
    trust(b, a)
    yield a, b
    a.close()
    b.close()


def add_file(node: Node, col, tmp: Path, size: int, name: str = "f.bin") -> ingest.Added:
    p = tmp / name
    p.write_bytes(os.urandom(size))
    return ingest.add(node, col, ingest.gather([p]), {"title_en": name})[0]


def test_granted_holder_gets_ciphertext_it_cannot_read(two, tmp_path):
    a, b = two
    col = collections.create(a, "closed one", "closed")
    added = add_file(a, col, tmp_path, 3_000_000)
    grants.share(a, col, b.peer_id)
    result = trio.run(pull, b, a)
    assert result.entries == 3 and result.records == 1 and result.blocks == 3
    assert verify_all(b).ok
    with pytest.raises(Exception, match="only as ciphertext"):
        items.get(b, added.id, str(tmp_path / "out"))
    # nothing more to fetch the second time
    again = trio.run(pull, b, a)
    assert again.entries == again.records == again.blocks == 0


def test_reader_can_read_and_revoked_reader_cannot_read_new_items(two, tmp_path):
    a, b = two
    col = collections.create(a, "trusted one", "trusted")
    first = add_file(a, col, tmp_path, 5000, "first.bin")
    grants.share(a, col, b.peer_id, read=True)
    trio.run(pull, b, a)
    out = tmp_path / "got.bin"
    items.get(b, first.id, str(out))
    assert out.read_bytes() == (tmp_path / "first.bin").read_bytes()
    grants.unshare(a, col, b.peer_id)
    grants.share(a, col, b.peer_id)  # still holds, can no longer read
    second = add_file(a, col, tmp_path, 5000, "second.bin")
    trio.run(pull, b, a)
    with pytest.raises(Exception, match="only as ciphertext"):
        items.get(b, second.id, str(tmp_path / "second.out"))
    items.get(b, first.id, str(tmp_path / "first.again"))  # the old key still opens old items


def test_ungranted_collections_are_not_served(two, tmp_path):
    a, b = two
    col = collections.create(a, "private", "closed")
    add_file(a, col, tmp_path, 100)
    result = trio.run(pull, b, a)
    assert result.collections == 0
    with b.store.read() as txn:
        assert b.archive.states(txn) == []


def test_a_holder_serves_another_holder_without_the_owner(tmp_path):
    a, b, c = (make_node(tmp_path, n) for n in "abc")
    for x, y in [(a, b), (b, a), (b, c), (c, b)]:
        trust(x, y)
    col = collections.create(a, "shared", "public")
    added = add_file(a, col, tmp_path, 2_500_000)
    grants.share(a, col, b.peer_id)
    grants.share(a, col, c.peer_id)
    trio.run(pull, b, a)
    a.close()  # the owner is gone
    trio.run(pull, c, b)
    items.get(c, added.id, str(tmp_path / "from-c"))
    assert (tmp_path / "from-c").read_bytes() == (tmp_path / "f.bin").read_bytes()


def test_restored_owner_gets_everything_back(tmp_path):
    from amanah.node import identity as identity_mod

    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "Cases", "closed")
    added = add_file(a, col, tmp_path, 1_500_000)
    grants.share(a, col, b.peer_id)
    trio.run(pull, b, a)
    identity_mod.write_backup(tmp_path / "a.backup", identity_mod.Backup(a.identity, "a", []), PW)
    a.close()
    backup = identity_mod.read_backup(tmp_path / "a.backup", PW)
    init_home(tmp_path / "a2", "", PW, backup=backup)
    a2 = Node(tmp_path / "a2", lambda: PW)
    trust(a2, b)
    trio.run(pull, a2, b)
    items.get(a2, added.id, str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == (tmp_path / "f.bin").read_bytes()
    assert collections.resolve(a2, "Cases").state.id == col.state.id


class Liar:
    """A server that answers with forged data, to prove the puller refuses it."""

    def __init__(self, node: Node, tamper) -> None:  # noqa: ANN001
        self.node, self.tamper = node, tamper

    async def serve(self, stream: MemStream, peer_key: bytes) -> None:
        server = sync_server.Server(self.node, peer_key)
        while True:
            frame = await stream.recv(msg.MAX_REQUEST)
            if not frame:
                return
            request = msg.decode(frame, msg.MAX_REQUEST, msg.REQUESTS)
            for response in server.answer(request):
                await stream.send(self.tamper(request, response))


def liar_pull(puller: Node, server: Node, tamper) -> replicate.PullResult:  # noqa: ANN001
    async def main() -> replicate.PullResult:
        to_server, to_puller = pair(server.peer_id, puller.peer_id)
        async with trio.open_nursery() as n:
            n.start_soon(Liar(server, tamper).serve, to_puller, puller.public_key)
            try:
                return await replicate.Puller(puller, to_server).run()
            finally:
                await to_server.close()

    return run_unwrapped(main)


def run_unwrapped(main, *args):  # noqa: ANN001, ANN002, ANN201
    """trio.run, raising the puller's PeerViolation itself rather than the nursery's group."""
    try:
        return trio.run(main, *args)
    except ExceptionGroup as group:
        violations = group.subgroup(replicate.PeerViolation)
        if violations is None:
            raise
        while isinstance(violations, ExceptionGroup):
            violations = violations.exceptions[0]
        raise violations from None


def _flip_block(request: dict, response: bytes) -> bytes:
    if request["t"] in ("block?", "blocks?"):
        data = bytearray(response)
        data[-1] ^= 1
        return bytes(data)
    return response


def _entries_tamper(fn):  # noqa: ANN001, ANN202
    def tamper(request: dict, response: bytes) -> bytes:
        if request["t"] != "log?":
            return response
        m = msg.decode(response, msg.MAX_RESPONSE, ("entries",))
        m["entries"] = fn(m["entries"])
        return msg.encode("entries", **{k: v for k, v in m.items() if k != "t"})

    return tamper


def _forge(entries: list[bytes]) -> list[bytes]:
    e = log.parse_entry(entries[-1])
    body = dict(e.body, at=e.body["at"] + 1)
    from amanah.protocol import cbor

    return entries[:-1] + [cbor.encode({"body": body, "sig": e.signature})]


@pytest.mark.parametrize(
    "tamper, problem",
    [
        (_flip_block, "does not match its id"),
        (_entries_tamper(lambda es: [es[0], es[2], es[1], *es[3:]]), "log entry rejected"),
        (_entries_tamper(_forge), "log entry rejected"),
        (_entries_tamper(lambda es: es[:-1] + [b"\xa1\x61x\x00"]), "invalid log entry"),
    ],
)
def test_hostile_data_is_refused_and_nothing_is_stored(two, tmp_path, tamper, problem):
    a, b = two
    col = collections.create(a, "pub", "public")
    add_file(a, col, tmp_path, 10_000, "one.bin")
    add_file(a, col, tmp_path, 10_000, "two.bin")
    grants.share(a, col, b.peer_id)
    with pytest.raises(replicate.PeerViolation, match=problem):
        liar_pull(b, a, tamper)
    with b.store.read() as txn:
        state = b.archive.state(txn, col.state.id)
        assert state is None or state.length == 4  # all of a verified range, or nothing
        blocks = b.blobs.enumerate(txn)
    if state is None:
        assert blocks == []
    # nothing stored is corrupt: at worst blocks are still missing
    assert all("missing" in d.problem for d in verify_all(b).damaged)
    # the honest source still works afterwards
    trio.run(pull, b, a)
    assert verify_all(b).ok
    with b.store.read() as txn:
        assert b.archive.state(txn, col.state.id).length == 4


@pytest.mark.parametrize("lacking", ["blocks?", "block?", "records?"])
def test_a_pull_that_misses_anything_does_not_mark_the_collection_complete(
    two, tmp_path, monkeypatch, lacking
):
    """The pull marks a collection complete from its own account of what it wanted and got:
    anything the peer did not have (a null answer) must keep the mark where it was."""
    a, b = two
    col = collections.create(a, "pub", "public")
    add_file(a, col, tmp_path, 1_000, "small.bin")  # one small block: blocks?
    add_file(a, col, tmp_path, 200_000, "larger.bin")  # one block over SMALL_BLOCK: block?
    grants.share(a, col, b.peer_id)
    dropped: list[str] = []

    def lacks_one(request: dict, response: bytes) -> bytes:
        if request["t"] != lacking or dropped:
            return response
        dropped.append(request["t"])
        if lacking == "block?":
            return msg.encode_block(request["id"], None)
        key = "records" if lacking == "records?" else "blocks"
        answer = msg.decode(response, msg.MAX_RESPONSE, (key,))[key]
        return msg.encode(key, **{key: [None, *answer[1:]]})

    liar_pull(b, a, lacks_one)
    assert dropped == [lacking]
    with b.store.read() as txn:
        state = b.archive.state(txn, col.state.id)
        assert state.length == 4
        assert b.archive.complete_at(txn, col.state.id) != 4
    assert not verify_all(b).ok or lacking == "records?"  # a block missing is reported
    trio.run(pull, b, a)  # the next pull gets the rest and only then marks it
    assert verify_all(b).ok
    with b.store.read() as txn:
        assert b.archive.complete_at(txn, col.state.id) == 4


def test_a_record_that_does_not_match_its_id_is_refused_with_those_after_it(two, tmp_path):
    a, b = two
    col = collections.create(a, "pub", "public")
    for n in range(3):
        add_file(a, col, tmp_path, 1_000, f"f{n}.bin")
    grants.share(a, col, b.peer_id)
    asked: list[bytes] = []

    def swap_second(request: dict, response: bytes) -> bytes:
        if request["t"] != "records?":
            return response
        asked.extend(request["ids"])
        records = msg.decode(response, msg.MAX_RECORDS_RESPONSE, ("records",))["records"]
        records[1] = records[1][:-1] + bytes([records[1][-1] ^ 1])  # another record's bytes
        return msg.encode("records", records=records)

    with pytest.raises(replicate.PeerViolation, match="record does not match"):
        liar_pull(b, a, swap_second)
    with b.store.read() as txn:  # the log, and the one record before the wrong one
        assert b.archive.state(txn, col.state.id).length == 5
        held = [txn.get(i, db=b.store.db["records"]) is not None for i in asked]
        assert held == [True, False, False]
        assert b.blobs.enumerate(txn) == []  # no block of anything
    trio.run(pull, b, a)  # an honest holder completes it
    assert verify_all(b).ok
    with b.store.read() as txn:
        assert b.archive.complete_at(txn, col.state.id) == 5


def test_mirror_gets_only_public(tmp_path):
    a, m = make_node(tmp_path, "a"), make_node(tmp_path, "m", role="mirror")
    trust(a, m, role="mirror")
    trust(m, a)
    pub = collections.create(a, "pub", "public")
    closed = collections.create(a, "closed", "closed")
    add_file(a, pub, tmp_path, 100)
    grants.share(a, pub, m.peer_id)
    with pytest.raises(Exception, match="only public collections"):
        grants.share(a, closed, m.peer_id)
    trio.run(pull, m, a)
    with m.store.read() as txn:
        assert [s.id for s in m.archive.states(txn)] == [pub.state.id]
    assert ids.to_text("col", pub.state.id)


def test_a_revoked_mirror_learns_of_its_revocation_and_gets_nothing_new(tmp_path):
    a, m = make_node(tmp_path, "a"), make_node(tmp_path, "m", role="mirror")
    trust(a, m, role="mirror")
    trust(m, a)
    pub = collections.create(a, "pub", "public")
    add_file(a, pub, tmp_path, 100, "first.bin")
    grants.share(a, pub, m.peer_id)
    trio.run(pull, m, a)
    grants.unshare(a, pub, m.peer_id)
    later = add_file(a, pub, tmp_path, 100, "later.bin")
    trio.run(pull, m, a)
    with m.store.read() as txn:
        state = m.archive.state(txn, pub.state.id)
        assert m.public_key not in state.grants and m.public_key in state.former
        assert txn.get(ids.from_text(later.id, "itm"), db=m.store.db["records"]) is None
    assert verify_all(m).damaged == [] or all("missing" in d.problem for d in verify_all(m).damaged)


def test_a_peer_only_ever_revoked_cannot_pull_a_collection_it_never_held(tmp_path):
    a, b = make_node(tmp_path, "a"), make_node(tmp_path, "b")
    trust(a, b)
    trust(b, a)
    col = collections.create(a, "c", "public")
    grants.share(a, col, b.peer_id)
    grants.unshare(a, col, b.peer_id)
    with pytest.raises(ExceptionGroup) as caught:
        trio.run(pull, b, a)
    assert caught.group_contains(replicate.PeerViolation, match="never granted", depth=None)
    with b.store.read() as txn:
        assert b.archive.states(txn) == []


def test_log_answers_cut_short_by_the_size_cap_are_asked_for_again(two, tmp_path, monkeypatch):
    """Log requests are pipelined; when the server's size cap cuts answers short, the answers
    already on their way no longer follow on and the gap is asked for again."""
    a, b = two
    col = collections.create(a, "many", "public")
    files = []
    for i in range(60):
        p = tmp_path / f"f{i}.txt"
        p.write_bytes(os.urandom(64))
        files.append(p)
    monkeypatch.setattr(log, "MAX_ITEMS", 1)  # an entry per item: a log of 62 entries
    ingest.add(a, col, ingest.gather(files), {"title_en": "x"})
    grants.share(a, col, b.peer_id)
    monkeypatch.setattr(msg, "ENTRIES_PER_RESPONSE", 10)  # several requests on their way
    monkeypatch.setattr(msg, "MAX_ENTRIES_RESPONSE", 4096 + 2000)  # fewer entries an answer
    asked: list[int] = []
    encode = msg.encode

    def counting(t: str, **fields):  # noqa: ANN202
        if t == "log?":
            asked.append(fields["from"])
        return encode(t, **fields)

    monkeypatch.setattr(msg, "encode", counting)
    result = trio.run(pull, b, a)
    with a.store.read() as txn:
        want = a.archive.state(txn, col.id).length
    assert result.entries == want == 62
    assert any(f % 10 for f in asked)  # a gap left by a short answer was asked for again
    assert verify_all(b).ok


def test_an_invalid_record_the_owner_signed_is_reported_and_skipped(two, tmp_path):
    """A record that hashes to the id in the owner's entry is the owner's doing: the puller
    skips and reports it, keeps the session and everything else (SPEC 11.6.4)."""
    import time

    from amanah.protocol import cbor

    a, b = two
    col = collections.create(a, "mixed", "public")
    good = add_file(a, col, tmp_path, 5000, "good.bin")
    bad_raw = cbor.encode({"v": 1, "not": "a record"})
    bad_id = ids.sha256_id(bad_raw)
    with a.store.write() as txn:
        state = a.archive.state(txn, col.id)
        entry = a.archive.append(txn, state, a.identity, "item", int(time.time()), item=bad_id)
        txn.put(bad_id, col.id + entry.seq.to_bytes(8, "big"), db=a.store.db["items"])
        txn.put(bad_id, bad_raw, db=a.store.db["records"])
    grants.share(a, col, b.peer_id)
    result = trio.run(pull, b, a)
    assert result.invalid == [ids.to_text("itm", bad_id)]
    assert result.records == 1 and result.blocks >= 1  # the good item came all the same
    with b.store.read() as txn:
        assert txn.get(bad_id, db=b.store.db["records"]) is None
        assert txn.get(ids.from_text(good.id, "itm"), db=b.store.db["records"]) is not None


def test_the_servers_cache_of_item_block_lists_is_bounded_by_ids(two, tmp_path, monkeypatch):
    a, b = two
    col = collections.create(a, "big items", "closed")
    for i in range(3):
        add_file(a, col, tmp_path, 3_000_000, f"f{i}.bin")  # 3 blocks each
    grants.share(a, col, b.peer_id)
    monkeypatch.setattr(sync_server, "ALLOWED_IDS_CACHED", 4)
    seen: list[int] = []

    class Watched(sync_server.Server):
        def _block(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            data = super()._block(*args, **kwargs)
            seen.append(self._allowed_ids)
            return data

    monkeypatch.setattr(sync_server, "Server", Watched)
    result = trio.run(pull, b, a)
    assert result.blocks == 9 and verify_all(b).ok
    assert seen and max(seen) <= 4  # cleared and rebuilt, never over the bound


def _many_items(node: Node, col, tmp: Path, n: int, monkeypatch) -> None:  # noqa: ANN001
    """`n` small items, each added by an entry of its own: a log of `n` more entries."""
    monkeypatch.setattr(log, "MAX_ITEMS", 1)
    files = []
    for i in range(n):
        p = tmp / f"m{i}.txt"
        p.write_bytes(os.urandom(100))
        files.append(p)
    ingest.add(node, col, ingest.gather(files), {"title_en": "x"})


def test_a_grant_beyond_the_first_log_round_is_found_by_surveying_the_log(
    two, tmp_path, monkeypatch
):
    """A new partner of a long collection: the log is verified whole first (without storing),
    then stored round by round, each round checked against what was surveyed."""
    a, b = two
    col = collections.create(a, "long", "closed")
    _many_items(a, col, tmp_path, 35, monkeypatch)
    grants.share(a, col, b.peer_id)  # at position 36, beyond the first rounds
    monkeypatch.setattr(replicate, "MAX_LOG_ROUND", 10)
    result = trio.run(pull, b, a)
    assert result.entries == 37 and result.records == 35
    assert verify_all(b).ok
    again = trio.run(pull, b, a)
    assert again.entries == again.records == again.blocks == 0


def _batched(node: Node, col, tmp: Path, n: int, per_entry: int, monkeypatch) -> None:  # noqa: ANN001
    """`n` small items in one add, `per_entry` named by each entry."""
    monkeypatch.setattr(log, "MAX_ITEMS", per_entry)
    folder = tmp / "batch"
    folder.mkdir()
    for i in range(n):
        (folder / f"b{i:03d}.txt").write_bytes(os.urandom(100))
    ingest.add(node, col, ingest.gather([folder]), {"title_en": "x"})


def _count_calls(monkeypatch, cls, name: str) -> list[int]:  # noqa: ANN001
    calls: list[int] = []
    real = getattr(cls, name)

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_log_rounds_end_at_a_byte_bound_and_a_grant_beyond_them_is_surveyed(
    two, tmp_path, monkeypatch
):
    """Batch entries are large: a round also ends once ROUND_BYTES of entries are in, so memory
    stays bounded however many items an entry names. A new partner whose grant lies beyond the
    first such round surveys the log first, then stores exactly the rounds surveyed."""
    a, b = two
    col = collections.create(a, "batches", "closed")
    _batched(a, col, tmp_path, 200, 10, monkeypatch)  # 20 entries of 10 items
    grants.share(a, col, b.peer_id)  # at position 21
    monkeypatch.setattr(msg, "ENTRIES_PER_RESPONSE", 1)
    monkeypatch.setattr(replicate, "ROUND_BYTES", 1)  # a round: the answers already asked for
    surveys = _count_calls(monkeypatch, replicate.Puller, "_survey_log")
    stores = _count_calls(monkeypatch, replicate.Puller, "_store_entries_txn")
    result = trio.run(pull, b, a)
    assert result.entries == 22 and result.records == 200
    assert len(surveys) == 1
    assert len(stores) == 6  # rounds of LOG_IN_FLIGHT (4) answers of one entry: 4 * 5 + 2
    assert verify_all(b).ok
    again = trio.run(pull, b, a)
    assert again.entries == again.records == again.blocks == 0


def test_a_round_larger_than_the_one_surveyed_is_refused(two, tmp_path, monkeypatch):
    a, b = two
    col = collections.create(a, "batches", "closed")
    _batched(a, col, tmp_path, 120, 10, monkeypatch)
    grants.share(a, col, b.peer_id)
    monkeypatch.setattr(msg, "ENTRIES_PER_RESPONSE", 1)
    monkeypatch.setattr(replicate, "ROUND_BYTES", 1)
    real = replicate.Puller._survey_log

    async def then_smaller(self, *args):  # noqa: ANN001, ANN002, ANN202
        ends = await real(self, *args)
        # as if the peer now sent bigger entries than it showed: the bound catches it in flight
        monkeypatch.setattr(replicate, "MAX_ROUND_BYTES", 1_000)
        return ends

    monkeypatch.setattr(replicate.Puller, "_survey_log", then_smaller)
    with pytest.raises(replicate.PeerViolation, match="larger than the one surveyed"):
        run_unwrapped(pull, b, a)
    with b.store.read() as txn:
        assert b.archive.states(txn) == []  # nothing of it kept


def test_a_log_that_differs_from_the_one_surveyed_is_refused(two, tmp_path, monkeypatch):
    a, b = two
    col = collections.create(a, "long", "closed")
    _many_items(a, col, tmp_path, 25, monkeypatch)
    grants.share(a, col, b.peer_id)
    monkeypatch.setattr(replicate, "MAX_LOG_ROUND", 10)
    real = replicate.Puller._survey_log

    async def lying_survey(self, *args):  # noqa: ANN001, ANN002, ANN202
        ends = await real(self, *args)
        return {end: bytes(34) for end in ends}  # as if the peer had shown another log

    monkeypatch.setattr(replicate.Puller, "_survey_log", lying_survey)
    with pytest.raises(replicate.PeerViolation, match="differs from the one surveyed"):
        run_unwrapped(pull, b, a)
    with b.store.read() as txn:
        assert b.archive.states(txn) == []  # nothing of it kept


def test_a_long_log_that_never_grants_us_is_refused_after_the_survey(two, tmp_path, monkeypatch):
    """A server sending a long collection that does not grant us: refused, nothing stored."""
    a, b = two
    col = collections.create(a, "long", "closed")
    _many_items(a, col, tmp_path, 25, monkeypatch)
    monkeypatch.setattr(replicate, "MAX_LOG_ROUND", 10)
    monkeypatch.setattr(sync_server, "may_serve", lambda *args: True)  # a server that overshares
    with pytest.raises(replicate.PeerViolation, match="never granted"):
        run_unwrapped(pull, b, a)
    with b.store.read() as txn:
        assert b.archive.states(txn) == []


def test_a_long_log_that_revoked_us_before_we_ever_held_it_is_refused(two, tmp_path, monkeypatch):
    a, b = two
    col = collections.create(a, "long", "closed")
    _many_items(a, col, tmp_path, 25, monkeypatch)
    grants.share(a, col, b.peer_id)
    grants.unshare(a, col, b.peer_id)
    monkeypatch.setattr(replicate, "MAX_LOG_ROUND", 10)
    monkeypatch.setattr(sync_server, "may_serve", lambda *args: True)  # a server that overshares
    with pytest.raises(replicate.PeerViolation, match="never granted"):
        run_unwrapped(pull, b, a)
    with b.store.read() as txn:
        assert b.archive.states(txn) == []
