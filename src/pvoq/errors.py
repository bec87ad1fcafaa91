"""The one exception tree: every error pvoq raises on purpose is a `PvoqError`.

Each part keeps its own exception (it is raised and caught under its own
name), declared on the branch that says what an edge does with it::

    PvoqError
    ├── OperatorError .............. exit 1 on the admin socket, HTTP 4xx: the text is for
    │   │                            the operator, who can act on it
    │   ├── CommandError             admin.protocol: an operator command refused (400)
    │   ├── SshFault                 remote.keys: the SSH link to a gateway failed (400)
    │   ├── AuditKeyError            quarantine.audit: the audit key is unreadable or not
    │   │                            this trail's (the manager does not start)
    │   ├── RescanFailed             manager.rescan: a dry rescan's gateway could not answer
    │   │                            (HTTP 502; the text names the gateway)
    │   ├── DataDirInUse             datadir_lock: another process runs on the data
    │   │                            directory (the appliance does not start)
    │   ├── Invalid ................ HTTP 400: a value the operator gave is wrong
    │   │   ├── ConfigError          config.errors: the configuration is refused (CLI: exit 2)
    │   │   ├── FilterSyntaxError    config.filterlang: a filter does not parse (the loader
    │   │   │                        makes it a ConfigError)
    │   │   ├── RulesError           scan.outbreak: the outbreak rules file is refused
    │   │   │                        (`outbreak reload` makes it a CommandError)
    │   │   ├── SearchError          quarantine.search
    │   │   └── SettingsError        quarantine.settings
    │   ├── Forbidden .............. HTTP 403
    │   │   └── PermissionDenied     quarantine.roles: the caller's role may not
    │   ├── NotFound ............... HTTP 404
    │   │   └── QuarantineError      quarantine.store: no such message, or not held there
    │   └── Conflict ............... HTTP 409
    ├── TemporaryFailure ........... SMTP 4xx: not now; the message is kept and tried again
    │   ├── ScanError                scan.verdict: a check could not decide
    │   │   ├── ScannerUnavailable   scan.antivirus
    │   │   └── ScannerLost          scan.workers
    │   ├── DeliveryError            smtp.client: the connection failed before the replies
    │   └── AdminUnavailable         admin.protocol: no appliance answers on the socket
    ├── ProtocolError .............. SMTP 5xx: a peer sent what the protocol refuses
    │   └── MetadataError            cpq.metadata: CPQ metadata malformed or missing
    ├── SpoolLogError                spool.log: the spool log cannot be used (a fault)
    ├── Unscannable                  scan.message: the message cannot be scanned, now or
    │                                ever (the pipeline gives it its unscannable action)
    │
    │   the test and demo environment (pvoq.testing), which no edge maps:
    ├── ClamdUnavailable             testing.clamd: no clamd to start (a RuntimeError too)
    ├── PostgresUnavailable          testing.pgserver: no PostgreSQL server to start
    └── DeploymentError              testing.localdeploy: a deployment step did not happen

The edges map a branch, never a class: the admin socket (`admin.protocol`)
answers an `OperatorError` with its text and `exit_code`, anything else with
`internal error: ...`; the REST API (`web.api`) answers with `http_status()`
and `{"error": {"message": text}}`, anything else being a 500; a
`TemporaryFailure` is a 4xx reply to an SMTP client (`smtp.replies.LOCAL_ERROR`,
`cpq.replies.SPACE_FULL`) or a retry from a queue, never a bounce. The test
and demo environment's exceptions hang from the root, not from
`TemporaryFailure`: nothing retries them, a missing program is for whoever
runs the tests to install, and the test or demo stops with their text.

This module imports nothing from pvoq: it is at the bottom of the
dependency graph, so that every part can declare its exception on it.
"""

from __future__ import annotations

from typing import ClassVar


class PvoqError(Exception):
    """The root: an error pvoq raises on purpose, as opposed to a bug."""


class OperatorError(PvoqError):
    """What the operator asked for cannot be done; the text says why.

    Exit 1 on the admin socket; on the REST API, the class's `status`.
    """

    status: ClassVar[int] = 400
    exit_code: ClassVar[int] = 1


class Invalid(OperatorError):
    """A value the operator gave (argument, query, configuration) is wrong: 400."""

    status = 400


class Forbidden(OperatorError):
    """The caller may not do this: 403."""

    status = 403


class NotFound(OperatorError):
    """What the operator named does not exist (or is not where they said): 404."""

    status = 404


class Conflict(OperatorError):
    """The request contradicts the current state: 409."""

    status = 409


class TemporaryFailure(PvoqError):
    """It could not be done now and will be tried again: an SMTP 4xx, the mail is kept."""


class ProtocolError(PvoqError):
    """A peer sent what the protocol refuses: an SMTP 5xx, the transaction is refused."""


def http_status(exc: BaseException) -> int | None:
    """The REST API's status for *exc*: an `OperatorError`'s, None for anything else.

    None means a fault of the server (500): no client did anything wrong.
    """
    return exc.status if isinstance(exc, OperatorError) else None


__all__ = ["Conflict", "Forbidden", "Invalid", "NotFound", "OperatorError", "ProtocolError",
           "PvoqError", "TemporaryFailure", "http_status"]
