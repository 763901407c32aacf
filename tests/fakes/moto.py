"""moto's server (``moto_server``) as a Route 53 on 127.0.0.1, for boto3 to talk to over
HTTP: started once per test session, reset between tests (``POST /moto-api/reset``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3

from tests.harness import free_port

CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": "us-east-1",
}


class MotoServer:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.1)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def client(self) -> object:
        return boto3.session.Session(**CREDENTIALS).client("route53", endpoint_url=self.url)

    def create_zone(self, name: str) -> str:
        """A hosted zone; its id (without the ``/hostedzone/`` prefix)."""
        client: object = self.client()
        answer = client.create_hosted_zone(  # type: ignore[attr-defined]
            Name=name, CallerReference=f"{name}-{time.monotonic_ns()}"
        )
        return str(answer["HostedZone"]["Id"]).rsplit("/", 1)[-1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def moto_server(log: Path) -> Iterator[MotoServer]:
    server = MotoServer(log)
    try:
        yield server
    finally:
        server.stop()
