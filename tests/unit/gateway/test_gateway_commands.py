"""The gateway's own operator commands, registered from their CommandSets."""

from __future__ import annotations

import asyncio

from pvoq.gateway import Gateway
from pvoq.gateway.commands import PipelineCommands, PvoCheckCommands, WorkQueueCommands


def test_the_gateway_registers_its_command_sets(gateway: Gateway) -> None:
    names = {*PipelineCommands.command_names(), *WorkQueueCommands.command_names(),
             *PvoCheckCommands.command_names()}
    assert names == {"pipeline.show", "outbreak.reload", "outbreak.rescan", "workqueue.status",
                     "workqueue.pause", "workqueue.resume", "pvo.check"}
    assert names <= set(gateway.admin.commands)


def test_workqueue_pause_status_resume(gateway: Gateway) -> None:
    commands = WorkQueueCommands(gateway.workqueue, gateway.maillog)

    async def main() -> list[dict[str, object]]:
        return [await commands.status({}), await commands.pause({}),
                await commands.pause({}), await commands.status({}),
                await commands.resume({}), await commands.resume({})]

    status, paused, again, held, resumed, not_paused = asyncio.run(main())
    assert status == {"text": "Status: Operating normally\nMessages: 0",
                      "data": {"status": "Operating normally", "messages": 0}}
    assert paused == {"text": "Work queue paused. Received mail waits, unscanned, in the spool."}
    assert again == {"text": "The work queue is already paused."}
    assert held["data"] == {"status": "Paused by admin", "messages": 0}
    assert resumed == {"text": "Work queue resumed."}
    assert not_paused == {"text": "The work queue is not paused."}
    gateway.maillog.flush()
    log = gateway.maillog.path.read_text()
    assert "Work queue paused by operator" in log and "Work queue resumed by operator" in log
