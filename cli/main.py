"""`amanah`: the command line. Each command parses, calls amanah.node, and prints.

Exit codes: 0 success, 1 a failure the user must see (one line on stderr, no traceback),
2 a usage error. Output is text for people, or JSON with --json for scripts.
"""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from pathlib import Path
from typing import Any

import click
from amanah.node.errors import AmanahError, InvalidInput, PassphraseError
from amanah.protocol.errors import FormatError


class _Group(click.Group):
    """Turns the node's errors into one clean line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AmanahError, FormatError) as exc:
            click.echo(f"error: {_one_line(str(exc))}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


def _one_line(text: str) -> str:
    """Control characters escaped: a message may quote a file name holding a newline or a
    terminal escape sequence, and must stay one harmless line."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in text)


class Ctx:
    def __init__(self, home: Path, passphrase_file: Path | None) -> None:
        self.home = home
        self.passphrase_file = passphrase_file
        self._node = None

    def passphrase(self) -> str | None:
        """From AMANAH_PASSPHRASE, --passphrase-file, or a prompt in a terminal (in that order)."""
        env = os.environ.get("AMANAH_PASSPHRASE")
        if env is not None:
            return env
        if self.passphrase_file is not None:
            try:
                return self.passphrase_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise PassphraseError(
                    f"cannot read {self.passphrase_file}: {exc.strerror}"
                ) from None
        if sys.stdin.isatty():
            return click.prompt("Passphrase", hide_input=True, err=True)
        return None

    def new_passphrase(self) -> str:
        env = os.environ.get("AMANAH_PASSPHRASE")
        if env is None and self.passphrase_file is None and sys.stdin.isatty():
            value = click.prompt(
                "New passphrase", hide_input=True, confirmation_prompt=True, err=True
            )
        else:
            value = self.passphrase()
        if not value:
            raise PassphraseError(
                "a passphrase is needed: set AMANAH_PASSPHRASE, use --passphrase-file, run in a "
                "terminal to be asked, or choose --no-passphrase"
            )
        return value

    @property
    def node(self):  # noqa: ANN201 - amanah.node.home.Node, imported lazily for start-up speed
        if self._node is None:
            from amanah.node.home import Node

            self._node = Node(self.home, self.passphrase)
            click.get_current_context().call_on_close(self._node.close)
        return self._node


pass_ctx = click.make_pass_decorator(Ctx)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    elif text is not None:
        click.echo(text)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AMANAH_HOME",
    help="Node home directory (default: $AMANAH_HOME or ~/.amanah).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, readable=False, path_type=Path),
    help="Read the identity passphrase from this file (else $AMANAH_PASSPHRASE or a prompt).",
)
@click.version_option(package_name="amanah")
@click.pass_context
def main(ctx: click.Context, home: Path | None, passphrase_file: Path | None) -> None:
    """Amanah: a peer-replicated archive node for evidence of human-rights violations."""
    from amanah.node.home import default_home

    ctx.obj = Ctx(home or default_home(), passphrase_file)


# --- node and identity --------------------------------------------------------------------------


@main.command()
@click.option("--name", default="", help="A name for this node, shown to its partners.")
@click.option("--no-passphrase", is_flag=True, help="Store the identity unencrypted (not advised).")
@click.option(
    "--restore",
    "restore",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Restore the identity (and peers) from a backup made by `amanah identity export`.",
)
@click.option(
    "--role", type=click.Choice(["partner", "mirror"]), default="partner", show_default=True
)
@pass_ctx
def init(c: Ctx, name: str, no_passphrase: bool, restore: Path | None, role: str) -> None:
    """Create a new node: its identity, config and store."""
    from amanah.node import home as home_mod
    from amanah.node import identity as identity_mod

    if (c.home / "identity").exists():
        raise AmanahError(
            f"{c.home} already holds an Amanah node; refusing to overwrite its identity"
        )
    backup = None
    if restore is not None:
        backup = identity_mod.read_backup(restore, c.passphrase())
    passphrase = None if no_passphrase else c.new_passphrase()
    identity = home_mod.init_home(c.home, name, passphrase, role, backup)
    verb = "Restored" if backup else "Created"
    click.echo(f"{verb} node {identity.peer_id} in {c.home}")
    if backup is not None:
        from amanah.node import peers
        from amanah.node.home import Node

        restored = 0
        with Node(c.home, lambda: passphrase) as node:
            for p in backup.peers:
                # SPEC 9.3: exactly these four fields (a closed map); an element that is not
                # one is skipped and reported, never guessed at, and never fails the restore.
                if not isinstance(p, dict) or set(p) != {"peer_id", "name", "addrs", "role"}:
                    click.echo(f"skipped a peer entry of the backup: {p!r:.200}", err=True)
                    continue
                try:
                    peers.add(node, p["peer_id"], p["addrs"], p["name"], p["role"])
                except (AmanahError, TypeError) as exc:
                    click.echo(f"skipped a peer entry of the backup ({exc}): {p!r:.200}", err=True)
                    continue
                restored += 1
        click.echo(f"Restored {restored} trusted peer(s). Run `amanah sync --wait` or")
        click.echo("`amanah run`: the collections come back from whichever partners are alive.")


@main.command("id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def id_(c: Ctx, as_json: bool) -> None:
    """Show this node's peer id, name and public key."""
    node = c.node
    data = {"peer_id": node.peer_id, "name": node.name, "public_key": node.public_key.hex()}
    emit(data, as_json, f"{data['peer_id']}  {data['name']}".rstrip())


@main.group()
def identity() -> None:
    """Back up this node's identity."""


@identity.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
def identity_export(c: Ctx, file: Path) -> None:
    """Write an encrypted identity backup to FILE (keep it offline, away from the node)."""
    from amanah.node import peers
    from amanah.node.identity import Backup, write_backup

    node = c.node
    secret = node.identity
    known = [p.as_dict() for p in peers.all_peers(node)]
    write_backup(file, Backup(secret, node.name, known), c.passphrase() or "")
    click.echo(f"Wrote identity backup of {node.peer_id} to {file}")
    click.echo("With it and one living partner, `amanah init --restore` brings this node back.")


# --- collections ---------------------------------------------------------------------------------


@main.group()
def collection() -> None:
    """Create, list and show collections."""


@collection.command("create")
@click.argument("name")
@click.option("--tier", type=click.Choice(["public", "trusted", "closed"]), required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def collection_create(c: Ctx, name: str, tier: str, as_json: bool) -> None:
    """Create a collection NAME owned by this node."""
    from amanah.node import collections

    info = collections.create(c.node, name, tier)
    data = collections.summary(info)
    emit(data, as_json, f"{data['id']}  {tier}  {name}")


@collection.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def collection_list(c: Ctx, as_json: bool) -> None:
    """List the collections this node holds."""
    from amanah.node import collections

    rows = [collections.summary(i) for i in collections.list_all(c.node)]
    text = "\n".join(f"{r['id']}  {r['tier']:<7}  {r['name'] or '(name encrypted)'}" for r in rows)
    emit(rows, as_json, text or "(no collections)")


@collection.command("show")
@click.argument("collection_ref", metavar="COLLECTION")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def collection_show(c: Ctx, collection_ref: str, as_json: bool) -> None:
    """Show a collection: tier, log length, head and grants."""
    from amanah.node import collections

    d = collections.describe(c.node, collections.resolve(c.node, collection_ref))
    lines = [
        f"id:         {d['id']}",
        f"name:       {d['name'] or '(encrypted)'}",
        f"tier:       {d['tier']}",
        f"owner:      {d['owner']}{' (this node)' if d['owned'] else ''}",
        f"log length: {d['log_length']}",
        f"head:       {d['head']}",
        f"items:      {d['items']} ({d['redacted']} redacted)",
        "grants:     "
        + (", ".join(f"{g['peer_id']} ({g['role']})" for g in d["grants"]) or "none"),
    ]
    emit(d, as_json, "\n".join(lines))


# --- items ----------------------------------------------------------------------------------------


def _parse_meta(
    title: str | None,
    title_ar: str | None,
    description: str | None,
    description_ar: str | None,
    source_url: str | None,
    captured_at: str | None,
    tags: tuple[str, ...],
    metas: tuple[str, ...],
    meta_file: Path | None,
) -> dict:
    meta: dict = {}
    if meta_file is not None:
        try:
            loaded = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {meta_file}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{meta_file} is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{meta_file} must hold a JSON object")
        meta.update(loaded)
    pairs = {
        "title_en": title,
        "title_ar": title_ar,
        "description_en": description,
        "description_ar": description_ar,
        "source_url": source_url,
        "captured_at": captured_at,
    }
    meta.update({k: v for k, v in pairs.items() if v is not None})
    if tags:
        meta["tags"] = list(meta.get("tags", [])) + list(tags)
    if metas:
        extra = dict(meta.get("extra", {})) if isinstance(meta.get("extra"), dict) else {}
        for m in metas:
            key, sep, value = m.partition("=")
            if not sep or not key.strip():
                raise InvalidInput(f"--meta takes KEY=VALUE, got {m!r}")
            extra[key.strip()] = value
        meta["extra"] = extra
    return meta


@main.command()
@click.argument("collection_ref", metavar="COLLECTION")
# readable=False: an unreadable file is a failure (exit 1, one line from ingest.gather), not a
# usage error, and is reported alike whether named or found inside a folder.
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--title", help="Title (English).")
@click.option("--title-ar", help="Title (Arabic).")
@click.option("--description", help="Description (English).")
@click.option("--description-ar", help="Description (Arabic).")
@click.option("--source-url", help="Where the original was found.")
@click.option("--captured-at", help="When it was captured (RFC 3339, e.g. 2024-05-01T13:45:00Z).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--meta", "metas", multiple=True, help="A free field KEY=VALUE (repeatable).")
@click.option(
    "--public-field",
    "public_fields",
    multiple=True,
    help="Let a mirror show 'location' (coordinates) or 'extra.KEY' (repeatable; default: not).",
)
@click.option(
    "--meta-file",
    type=click.Path(dir_okay=False, readable=False, path_type=Path),
    help="Metadata as a JSON object (fields as in protocol/SPEC.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def add(
    c: Ctx,
    collection_ref: str,
    paths: tuple[Path, ...],
    title: str | None,
    title_ar: str | None,
    description: str | None,
    description_ar: str | None,
    source_url: str | None,
    captured_at: str | None,
    tags: tuple[str, ...],
    metas: tuple[str, ...],
    public_fields: tuple[str, ...],
    meta_file: Path | None,
    as_json: bool,
) -> None:
    """Add files (folders recursively) to COLLECTION, with the metadata given."""
    from amanah.node import collections, ingest
    from amanah.node.tuning import tune_process

    tune_process()  # before ingest starts its threads (node/tuning.py)
    from amanah.protocol import metadata as metadata_mod

    meta = _parse_meta(
        title,
        title_ar,
        description,
        description_ar,
        source_url,
        captured_at,
        tags,
        metas,
        meta_file,
    )
    try:
        meta = metadata_mod.validate_user(meta)
    except FormatError as exc:
        raise InvalidInput(f"invalid metadata: {exc}") from None
    sources = ingest.gather(paths)
    node = c.node
    info = collections.resolve(node, collection_ref)
    total = sum(s.size for s in sources)
    show = sys.stderr.isatty() and not as_json
    with click.progressbar(length=total, label="Adding", file=sys.stderr, hidden=not show) as bar:
        added = ingest.add(node, info, sources, meta, bar.update)
    rows = [a.as_dict() for a in added]
    text = "\n".join(f"{a.id}  {a.sha256}  {a.path}" for a in added)
    emit(rows, as_json, text or "(no files)")


@main.command("ls")
@click.argument("collection_ref", metavar="COLLECTION")
@click.option("--all", "include_redacted", is_flag=True, help="Include redacted items.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def ls(c: Ctx, collection_ref: str, include_redacted: bool, as_json: bool) -> None:
    """List the items of COLLECTION."""
    from amanah.node import collections, items

    info = collections.resolve(c.node, collection_ref)
    rows = list(items.list_items(c.node, info.state, include_redacted))
    lines = []
    for r in rows:
        if r.get("redacted"):
            lines.append(f"{r['id']}  (redacted)")
        elif r.get("damaged"):
            lines.append(f"{r['id']}  (damaged: {r['damaged']}; run amanah verify)")
        elif not r["readable"]:
            lines.append(f"{r['id']}  {r['size']:>12}  (encrypted: not readable on this node)")
        else:
            m = r["metadata"]
            title = m.get("title_en") or m.get("title_ar") or ""
            lines.append(f"{r['id']}  {r['size']:>12}  {m['filename']}  {title}".rstrip())
    emit(rows, as_json, "\n".join(lines) or "(no items)")


@main.command()
@click.argument("item_ref", metavar="ITEM")
@click.option("-o", "--output", help="File or folder to write to ('-' for standard output).")
@click.option("--force", is_flag=True, help="Replace an existing file.")
@pass_ctx
def get(c: Ctx, item_ref: str, output: str | None, force: bool) -> None:
    """Write an item's original file, every block and the SHA-256 verified."""
    from amanah.node import items

    show = sys.stderr.isatty() and output != "-"
    with click.progressbar(length=0, label="Reading", file=sys.stderr, hidden=not show) as bar:
        dest, meta = items.get(c.node, item_ref, output, force, bar.update)
    if dest is not None:
        click.echo(f"{dest}  sha256 {meta['sha256']} verified", err=True)


@main.command()
@click.argument("target", required=False, metavar="[COLLECTION|ITEM]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def verify(c: Ctx, target: str | None, as_json: bool) -> None:
    """Re-hash every block and check every signature and the hash chain."""
    from amanah.node import collections, items
    from amanah.node import verify as verify_mod

    node = c.node
    if target is None:
        report = verify_mod.verify_all(node)
    elif target.startswith("itm_"):
        report = verify_mod.verify_item(node, items.locate(node, target))
    else:
        info = collections.resolve(node, target)
        report = verify_mod.verify_collection(node, info.state, verify_mod.Report())
    data = report.as_dict()
    if as_json:
        emit(data, True)
    else:
        ch = data["checked"]
        click.echo(
            f"checked {ch['collections']} collection(s), {ch['entries']} log entries, "
            f"{ch['items']} item(s), {ch['blocks']} block(s), {ch['bytes']} bytes"
        )
        for d in data["damaged"]:
            where = " ".join(str(d[k]) for k in ("item", "id") if k in d)
            pos = f" at position {d['position']}" if "position" in d else ""
            click.echo(f"DAMAGED {d['kind']}{pos} in {d['collection']} {where}: {d['problem']}")
        click.echo("intact" if report.ok else f"{len(data['damaged'])} problem(s) found")
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("item_ref", metavar="ITEM")
@click.option("--reason", required=True, help="Why (kept, signed, in the collection's log).")
@pass_ctx
def redact(c: Ctx, item_ref: str, reason: str) -> None:
    """Withdraw an item: a signed tombstone in the log; its content and metadata are erased."""
    from amanah.node import redact as redact_mod

    entry = redact_mod.redact(c.node, item_ref, reason)
    click.echo(f"Redacted {item_ref} (log position {entry.seq})")


# --- peers and grants ------------------------------------------------------------------------


@main.group()
def peer() -> None:
    """Manage the partners this node trusts (only they can connect)."""


@peer.command("add")
@click.argument("peer_id")
@click.option(
    "--addr", "addrs", multiple=True, help="A TCP multiaddr, e.g. /ip4/192.0.2.7/tcp/4710."
)
@click.option("--name", default="", help="A name for this partner.")
@click.option(
    "--role", type=click.Choice(["partner", "mirror"]), default="partner", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def peer_add(
    c: Ctx, peer_id: str, addrs: tuple[str, ...], name: str, role: str, as_json: bool
) -> None:
    """Trust PEER_ID (a libp2p peer id, 12D3KooW…)."""
    from amanah.node import peers

    p = peers.add(c.node, peer_id, list(addrs), name, role)
    emit(p.as_dict(), as_json, f"Trusted {p.peer_id} ({p.role}) {p.name}".rstrip())


@peer.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def peer_list(c: Ctx, as_json: bool) -> None:
    """List trusted peers."""
    from amanah.node import peers

    rows = [p.as_dict() for p in peers.all_peers(c.node)]
    text = "\n".join(
        f"{r['peer_id']}  {r['role']:<7}  {r['name']}  {' '.join(r['addrs'])}" for r in rows
    )
    emit(rows, as_json, text or "(no peers)")


@peer.command("remove")
@click.argument("peer_ref", metavar="PEER")
@pass_ctx
def peer_remove(c: Ctx, peer_ref: str) -> None:
    """Stop trusting PEER (its grants stay in the logs until you unshare)."""
    from amanah.node import peers

    p = peers.remove(c.node, peer_ref)
    click.echo(f"Removed {p.peer_id}; it can no longer connect")


@main.command()
@click.argument("collection_ref", metavar="COLLECTION")
@click.argument("peer_ref", metavar="PEER")
@click.option("--read", is_flag=True, help="Also give it the key (not for closed collections).")
@pass_ctx
def share(c: Ctx, collection_ref: str, peer_ref: str, read: bool) -> None:
    """Grant PEER a copy of COLLECTION to hold (ciphertext), or to read with --read."""
    from amanah.node import collections, grants

    info = collections.resolve(c.node, collection_ref)
    entry = grants.share(c.node, info, peer_ref, read)
    click.echo(f"Granted {entry.body['role']} to {peer_ref} (log position {entry.seq})")


@main.command()
@click.argument("collection_ref", metavar="COLLECTION")
@click.argument("mirror_ref", metavar="MIRROR_PEER")
@pass_ctx
def publish(c: Ctx, collection_ref: str, mirror_ref: str) -> None:
    """Publish a public COLLECTION to a mirror, which serves it on the web."""
    from amanah.node import collections, grants, peers

    node = c.node
    mirror = peers.get(node, mirror_ref)
    if mirror.role != "mirror":
        raise InvalidInput(f"{mirror.peer_id} is not a mirror (peer add … --role mirror)")
    info = collections.resolve(node, collection_ref)
    if info.state.tier != "public":
        raise InvalidInput("only public collections can be published to a mirror")
    entry = grants.share(node, info, mirror.peer_id)
    click.echo(f"Published to mirror {mirror.peer_id} (log position {entry.seq})")


@main.command()
@click.argument("collection_ref", metavar="COLLECTION")
@click.argument("peer_ref", metavar="PEER")
@pass_ctx
def unshare(c: Ctx, collection_ref: str, peer_ref: str) -> None:
    """Revoke PEER's grant on COLLECTION; a reader's removal rotates the key."""
    from amanah.node import collections, grants

    info = collections.resolve(c.node, collection_ref)
    entry = grants.unshare(c.node, info, peer_ref)
    rotated = " and rotated the key" if "key" in entry.body else ""
    click.echo(f"Revoked {peer_ref}{rotated} (log position {entry.seq})")


# --- the daemon, sync and status ----------------------------------------------------------------


@main.command()
@click.option("--listen", "listen", multiple=True, help="libp2p listen multiaddr (repeatable).")
@click.option("--http", "http", help="HTTP API address HOST:PORT (default from config).")
@click.option("--no-mdns", is_flag=True, help="Do not advertise or browse on the LAN.")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
@pass_ctx
def run(c: Ctx, listen: tuple[str, ...], http: str | None, no_mdns: bool, verbose: bool) -> None:
    """Run the node: replicate with trusted peers, serve the local HTTP API."""
    import logging

    from amanah.node import daemon

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("libp2p").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    node = c.node
    if daemon.running_info(node.home):
        raise AmanahError(f"a daemon is already running for {node.home}")
    cfg = node.config
    daemon.Daemon(
        node, list(listen) or cfg.listen, http or cfg.http, cfg.mdns and not no_mdns
    ).run()


@main.command()
@click.option("--peer", "peer_ref", help="Only this peer (id or name).")
@click.option("--wait", is_flag=True, help="Exit 0 once in sync with the peers, 1 on timeout.")
@click.option(
    "--timeout", type=float, default=60.0, show_default=True, help="Seconds, with --wait."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def sync(c: Ctx, peer_ref: str | None, wait: bool, timeout: float, as_json: bool) -> None:
    """Sync now with the trusted peers (through the running daemon, or on its own)."""
    from amanah.node import sync_cmd

    report = sync_cmd.sync(c.node, peer_ref, wait, timeout)
    text = "\n".join(report["lines"])
    emit(report, as_json, text)
    if not report["ok"]:
        sys.exit(1)


@main.command()
@click.argument("collection_ref", required=False, metavar="[COLLECTION]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(c: Ctx, collection_ref: str | None, as_json: bool) -> None:
    """Replication status: per collection, what each granted peer holds, and copies."""
    from amanah.node import collections
    from amanah.node import status as status_mod

    node = c.node
    if collection_ref:
        infos = [collections.resolve(node, collection_ref)]
    else:
        infos = collections.list_all(node)
    rows = []
    for info in infos:
        row = status_mod.collection_status(node, info.state)
        row["name"] = info.name
        rows.append(row)
    lines = []
    for r in rows:
        done = "complete" if r["complete"] else "incomplete"
        lines.append(
            f"{r['id']}  {r['tier']:<7} {r['name'] or '(name encrypted)'}: log {r['log_length']}, "
            f"{done} here, {r['copies']} full cop{'y' if r['copies'] == 1 else 'ies'} known"
        )
        for p in r["peers"]:
            seen = "never" if p["last_contact"] is None else _ago(p["last_contact"])
            state = (
                "complete" if p["complete"] else f"at {p['length']}" if p["length"] else "unknown"
            )
            lines.append(
                f"    {p['peer_id']} {p['name']} ({p['role']}): {state}, last contact {seen}"
            )
    data = rows if collection_ref is None else rows[0]
    emit(data, as_json, "\n".join(lines) or "(no collections)")


def _ago(ts: float) -> str:
    import time

    s = max(0, int(time.time() - ts))
    return f"{s} s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


if __name__ == "__main__":
    main()
