"""Tests for pvoq.scan.antivirus against a real clamd (INSTREAM over Unix and TCP sockets)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from scanhelpers import encrypted_zip, message, start_clamd, with_attachment

from pvoq.config.model import AntivirusSettings, ScanSettings
from pvoq.scan.antivirus import (
    CLEAN,
    EICAR,
    ENCRYPTED,
    UNSCANNABLE,
    VIRAL,
    ClamdEngine,
    EicarEngine,
    ScannerUnavailable,
    parse_reply,
)
from pvoq.scan.pipeline import ANTIVIRUS, Pipeline, ScanError
from pvoq.testing.clamd import SIGNATURE_NAME, ClamdProcess
from pvoq.testing.localdeploy import free_port


class TestClamd:
    def test_clean_message(self, clamd: ClamdProcess) -> None:
        """A clean message is CLEAN."""
        assert clamd.engine().scan(message()).verdict == CLEAN

    def test_eicar_in_base64_attachment(self, clamd: ClamdProcess) -> None:
        """clamd decodes MIME: EICAR inside a base64 attachment is VIRAL, with its name."""
        body = with_attachment(EICAR, filename="invoice.com")
        assert EICAR not in body
        result = clamd.engine().scan(body)
        assert result.verdict == VIRAL
        assert result.names[0].startswith(SIGNATURE_NAME)

    def test_large_message_in_chunks(self, clamd: ClamdProcess) -> None:
        """A message larger than one INSTREAM chunk is streamed whole and scanned."""
        body = with_attachment(b"x" * 300_000 + EICAR)
        assert clamd.engine().scan(body).verdict == VIRAL

    def test_pipeline_reason_is_the_signature_name(self, clamd: ClamdProcess) -> None:
        """Through the pipeline, clamd's signature name is the Virus quarantine's reason."""
        settings = ScanSettings(antivirus=AntivirusSettings(
            clamd_socket=str(clamd.socket_path), timeout_seconds=5))
        pipeline = Pipeline(settings)
        (verdict,) = pipeline.run(with_attachment(EICAR)).verdicts
        pipeline.close()
        assert (verdict.stage, verdict.quarantine) == (ANTIVIRUS, "Virus")
        assert verdict.reason.startswith(f"a/v verdict:VIRAL {SIGNATURE_NAME}")
        assert "clamd unix:" in verdict.detail

    def test_over_tcp(self, tmp_path: Path) -> None:
        """clamd on a TCP port of 127.0.0.1 answers the same way."""
        proc = start_clamd(tmp_path, tcp_port=free_port())
        try:
            engine = proc.engine()
            assert engine.describe().startswith("clamd tcp:127.0.0.1:")
            assert engine.scan(message(body=EICAR.decode())).verdict == VIRAL
        finally:
            proc.stop()

    def test_stream_over_the_limit_is_unscannable(self, tmp_path: Path) -> None:
        """A message over clamd's StreamMaxLength is UNSCANNABLE, not clean."""
        proc = start_clamd(tmp_path, stream_max_bytes=4096)
        try:
            result = proc.engine().scan(with_attachment(b"y" * 200_000))
        finally:
            proc.stop()
        assert result.verdict == UNSCANNABLE

    def test_encrypted_archive_follows_the_unscannable_action(self, clamd: ClamdProcess
                                                              ) -> None:
        """An encrypted zip attachment is ENCRYPTED, and the configured action applies."""
        archive = encrypted_zip("payload.txt", b"secret " * 50, b"password")
        body = with_attachment(archive, filename="payload.zip", subtype="zip")
        result = clamd.engine().scan(body)
        assert (result.verdict, result.names) == (ENCRYPTED, ("Heuristics.Encrypted.Zip",))
        settings = ScanSettings(antivirus=AntivirusSettings(
            clamd_socket=str(clamd.socket_path), unscannable_action="quarantine"))
        pipeline = Pipeline(settings)
        (verdict,) = pipeline.run(body).verdicts
        pipeline.close()
        assert (verdict.quarantine, verdict.reason) == ("Virus", "a/v verdict:ENCRYPTED")

    def test_stopped_clamd_is_unavailable(self, tmp_path: Path) -> None:
        """A clamd that is not running raises ScannerUnavailable (a temporary failure)."""
        proc = start_clamd(tmp_path)
        engine = proc.engine()
        proc.stop()
        with pytest.raises(ScannerUnavailable, match="unavailable"):
            engine.scan(message())
        settings = ScanSettings(antivirus=AntivirusSettings(clamd_socket=str(proc.socket_path)))
        pipeline = Pipeline(settings)
        with pytest.raises(ScanError):
            pipeline.run(message())
        pipeline.close()

    def test_silent_server_times_out(self) -> None:
        """A server that accepts but never answers times out as ScannerUnavailable."""
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            engine = ClamdEngine(host="127.0.0.1", port=server.getsockname()[1], timeout_s=0.3)
            with pytest.raises(ScannerUnavailable, match="timed out after 0.3s"):
                engine.scan(message())


class TestReplies:
    @pytest.mark.parametrize(("reply", "verdict", "names"), [
        ("stream: OK", CLEAN, ()),
        ("stream: Eicar-Test-Signature FOUND", VIRAL, ("Eicar-Test-Signature",)),
        ("stream: Heuristics.Encrypted.Zip FOUND", ENCRYPTED, ("Heuristics.Encrypted.Zip",)),
        ("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", UNSCANNABLE,
         ("Heuristics.Limits.Exceeded.MaxFileSize",)),
        ("INSTREAM size limit exceeded. ERROR", UNSCANNABLE, ()),
    ])
    def test_reply_mapping(self, reply: str, verdict: str, names: tuple[str, ...]) -> None:
        """Each clamd reply maps to its AsyncOS verdict."""
        result = parse_reply(reply)
        assert (result.verdict, result.names) == (verdict, names)

    def test_other_error_is_unavailable(self) -> None:
        """Any other clamd error is a temporary failure, never clean."""
        with pytest.raises(ScannerUnavailable, match="Can't allocate memory"):
            parse_reply("stream: Can't allocate memory ERROR")


class TestBuiltin:
    def test_builtin_engine_finds_eicar_in_attachment(self) -> None:
        """The built-in fallback finds EICAR in a decoded attachment, and nothing else."""
        engine = EicarEngine()
        assert engine.scan(with_attachment(EICAR)).verdict == VIRAL
        assert engine.scan(message()).verdict == CLEAN
