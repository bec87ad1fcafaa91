"""The manager's log subscription and message tracking.

A gateway serves its mail_logs in chunks over the SSH command channel
(`reader`, `commands.LogChunkCommands`); the manager pulls each gateway's
chunks, keeps the lines under `<data>/gateway_logs/<gateway>/` and indexes
them with its own mail_logs (`subscriber`, `index`, `lines`); tracking
queries the index and puts each message's path together (`tracking`).
"""
