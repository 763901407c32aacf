"""A thin HTTP layer in front of moto's Route 53 that enforces what moto does not
(../shared/PROVIDERS.md): a DELETE in ``ChangeResourceRecordSets`` must match the current
RRset exactly (TTL and values), and a CREATE must not meet an existing one; otherwise the
whole batch is refused with Route 53's ``InvalidChangeBatch`` and its messages, and nothing
reaches moto.  Every other request is passed through unchanged.  On 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import re
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.harness import free_port

NS = "{https://route53.amazonaws.com/doc/2013-04-01/}"
_RRSET_PATH = re.compile(r"^/2013-04-01/hostedzone/(?P<zone>[^/]+)/rrset/?$")


def _error(message: str) -> bytes:
    return (
        '<?xml version="1.0"?>\n<InvalidChangeBatch xmlns="https://route53.amazonaws.com/doc/'
        f'2013-04-01/"><Messages><Message>{message}</Message></Messages>'
        "<RequestId>strict-0</RequestId></InvalidChangeBatch>"
    ).encode()


class StrictRoute53:
    def __init__(self, moto_port: int) -> None:
        self.moto_port = moto_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.refused: list[str] = []
        layer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", layer.moto_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length", "0"))
                return self.rfile.read(length) if length else b""

            def do_GET(self) -> None:
                self._forward(b"")

            def do_DELETE(self) -> None:
                self._forward(self._body())

            def do_POST(self) -> None:
                body = self._body()
                found = _RRSET_PATH.match(self.path.split("?")[0])
                refusal = layer.check(found.group("zone"), body) if found else None
                if refusal is None:
                    self._forward(body)
                    return
                layer.refused.append(refusal)
                data = _error(refusal)
                self.send_response(400)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def current(self, zone: str) -> dict[tuple[str, str], tuple[int, list[str]]]:
        """moto's RRsets of the zone (one listing, all pages)."""
        import boto3

        from tests.fakes.moto import CREDENTIALS

        client: Any = boto3.session.Session(**CREDENTIALS).client(
            "route53", endpoint_url=f"http://127.0.0.1:{self.moto_port}"
        )
        out = {}
        for page in client.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone):
            for s in page["ResourceRecordSets"]:
                name = s["Name"].replace("\\052", "*").lower()
                values = sorted(r["Value"] for r in s.get("ResourceRecords", []))
                out[(name, s["Type"])] = (int(s.get("TTL", 0)), values)
        return out

    def check(self, zone: str, body: bytes) -> str | None:
        """Why Route 53 would refuse this change batch, or None."""
        root = ET.fromstring(body)
        current = self.current(zone)
        for change in root.iter(f"{NS}Change"):
            action = change.findtext(f"{NS}Action")
            rrset = change.find(f"{NS}ResourceRecordSet")
            assert rrset is not None
            name = (rrset.findtext(f"{NS}Name") or "").lower()
            if not name.endswith("."):
                name += "."
            rdtype = rrset.findtext(f"{NS}Type") or ""
            ttl = int(rrset.findtext(f"{NS}TTL") or 0)
            values = sorted(v.text or "" for v in rrset.iter(f"{NS}Value"))
            held = current.get((name, rdtype))
            what = f"[name='{name}', type='{rdtype}']"
            if action == "DELETE":
                if held is None:
                    return f"Tried to delete resource record set {what} but it was not found"
                if held != (ttl, values):
                    return (
                        f"Tried to delete resource record set {what} but the values provided "
                        "do not match the current values"
                    )
                del current[(name, rdtype)]  # a later CREATE in the batch may put it back
            elif action == "CREATE":
                if held is not None:
                    return f"Tried to create resource record set {what} but it already exists"
                current[(name, rdtype)] = (ttl, values)
        return None

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
