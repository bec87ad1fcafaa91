"""A CPQ transfer's pipelined group (MAIL, RCPT, every `XCPQ META`, DATA) is answered in
one write over TLS, on both event loops: the listener holds the replies while the next
command is already read in (`smtp.limits`). By BDAT (the gateway's way), the whole
transaction, message included, is one write and so are all its replies. Real sockets on
127.0.0.1, mutual TLS."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pvoq.cpq.metadata import KIND_QUARANTINE, VERSION, encode_chunks
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.smtp.client import TRANSACTIONS_IN_FLIGHT
from pvoq.smtp.server import ServerContext
from pvoq.testing.cpqlink import GATEWAY, LOOPS, cpq_link, issue_pair

BODY = b"Subject: held\r\n\r\nhi\r\n"


class Taker(CpqHandler):
    commits_whole = True

    async def store(self, *args: Any) -> str:
        return "250 2.0.0 Ok: quarantined"


class Recorded(CpqSMTP):
    """A CPQ session whose replies are recorded, one entry per write."""

    writes: list[bytes]

    async def push(self, status: Any) -> None:
        writer = self._writer
        if "write" not in writer.__dict__:
            write = writer.write

            def recorded(data: bytes) -> None:
                self.writes.append(bytes(data))
                write(data)

            writer.write = recorded  # type: ignore[method-assign]
        await super().push(status)


def metadata(size: int) -> dict[str, Any]:
    # A long reason: the metadata takes several XCPQ META lines.
    return {"v": VERSION, "kind": KIND_QUARANTINE, "transfer_id": "gw1-SN-1",
            "origin": {"hostname": GATEWAY, "serial": "GW1-SN", "mid": 1},
            "sender": "alice@example.org", "recipients": [{"rid": 0, "address": "b@example.com"}],
            "quarantines": [{"name": "Policy", "reason": "content filter:" + "x" * 1500,
                             "stage": "content_filters"}],
            "received": 1700000000.5, "size": size}


@pytest.mark.parametrize("chunked", [True, False], ids=["bdat", "data"])
@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_transfer_group_is_answered_in_one_write(tmp_path: Path, loop: str,
                                                   chunked: bool) -> None:
    certs = issue_pair(tmp_path / "pki")
    writes: list[bytes] = []
    chunks = encode_chunks(metadata(len(BODY)))
    assert len(chunks) > 1

    def session(context: ServerContext, listener: Any, tls: Any) -> Recorded:
        smtp = Recorded(Taker(context), listener=listener, interface_ip="127.0.0.1",
                        context=context, tls_context=tls)
        smtp.writes = writes
        return smtp

    async def main() -> dict[int, Any]:
        async with cpq_link(tmp_path, session, server_certs=certs["manager"],
                            client_certs=certs["gateway"]) as link:
            link.conn.pipeline_transactions = chunked
            await link.open()
            assert link.conn.in_flight == (TRANSACTIONS_IN_FLIGHT if chunked else 1)
            writes.clear()
            return await link.conn.send(mid=1, sender="alice@example.org",
                                        recipients=[(0, "b@example.com")], body=BODY,
                                        extra=[f"XCPQ META {c}" for c in chunks])

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        results = runner.run(asyncio.wait_for(main(), 60))
    assert results[0].code == 250, results
    if chunked:  # MAIL, RCPT, each META, and the message's own reply: one write
        codes = [line[:4] for line in writes[0].split(b"\r\n") if line]
        assert codes == [b"250 "] * (3 + len(chunks)), writes
        assert writes[0].split(b"\r\n")[-2] == b"250 2.0.0 Ok: quarantined"
        assert writes[1:] == [b"221 Bye\r\n"], writes
        return
    group = [w for w in writes if b"354" in w]
    assert len(group) == 1, writes
    codes = [line[:3] for line in group[0].split(b"\r\n") if line]
    assert codes == [b"250", b"250", *[b"250"] * len(chunks), b"354"]
    assert writes.index(group[0]) == 0 and writes[1].startswith(b"250 ")  # then the 250
