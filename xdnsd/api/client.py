"""The HTTP API from the other side: what the CLI uses with ``--server URL`` (and a token).

``Remote`` has the methods of ``Operations`` that the CLI calls, with the same arguments and
the same documents back, so a command prints the same thing whether it read the node's store
or asked the node's API.  Errors are the same ``OpError``: the API's status, code and message
(status 0 when the server could not be reached).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from xdnsd.api.ops import OpError


class Remote:
    def __init__(
        self, server: str, token: str, *, cafile: str | None = None, timeout: float = 60.0
    ) -> None:
        if "://" not in server:
            server = f"http://{server}"
        self.base = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Any:
        """One API call: the JSON answer, or (``text/dns`` answers) the text; OpError else."""
        url = f"{self.base}/api/v1/{path}"
        if query:
            url += "?" + urlencode(
                [(k, v) for k, vs in query.items() if vs is not None for v in _values(vs)]
            )
        data = None
        request = urllib.request.Request(url, method=method)
        if text is not None:
            data = text.encode()
            request.add_header("Content-Type", "text/dns; charset=utf-8")
        elif body is not None:
            data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        request.data = data
        request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as r:
                payload = r.read()
                if r.headers.get_content_type() == "text/dns":
                    return payload.decode()
                return json.loads(payload)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)["error"]
                raise OpError(exc.code, str(error["code"]), str(error["message"])) from None
            except (ValueError, KeyError, TypeError):
                raise OpError(
                    exc.code, "http", f"{self.base}: HTTP {exc.code} {exc.reason}"
                ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OpError(0, "unreachable", f"cannot reach {self.base}: {reason}") from None

    # --- the Operations the CLI uses --------------------------------------------------------

    def zones(self, count: bool = False) -> Any:
        return self.call("GET", "zones", query={"count": "1" if count else None})

    def create_zone(
        self,
        zone_text: str,
        who: str,
        *,
        file: str | None = None,
        ns: Any = None,
        email: Any = None,
    ) -> Any:
        body: dict[str, Any] = {"zone": zone_text}
        for key, value in (("file", file), ("ns", ns), ("email", email)):
            if value is not None:
                body[key] = value
        return self.call("POST", "zones", body)

    def import_zone(self, zone_text: str, text: str, who: str) -> Any:
        return self.call("PUT", f"zones/{_part(zone_text)}/file", text=text)

    def export_zone(self, zone_text: str) -> str:
        return str(self.call("GET", f"zones/{_part(zone_text)}/file"))

    def drop_zone(self, zone_text: str, who: str) -> Any:
        return self.call("DELETE", f"zones/{_part(zone_text)}")

    def deleted_zones(self) -> Any:
        return self.call("GET", "deleted-zones")

    def records(self, zone_text: str, name: str | None = None, rdtype: str | None = None) -> Any:
        return self.call(
            "GET", f"zones/{_part(zone_text)}/records", query={"name": name, "type": rdtype}
        )

    def write_rrset(self, zone_text: str, mode: str, doc: Mapping[str, Any], who: str) -> Any:
        path = f"zones/{_part(zone_text)}/records"
        if mode == "delete":
            query = {"name": doc.get("name"), "type": doc.get("type"), "data": doc.get("data")}
            return self.call("DELETE", path, query=query)
        return self.call("PUT" if mode == "replace" else "POST", path, dict(doc))

    def history(self, zone_text: str, limit: int = 50, records: bool = False) -> Any:
        query = {"limit": limit, "records": "1" if records else None}
        return self.call("GET", f"zones/{_part(zone_text)}/history", query=query)

    def peers(self) -> Any:
        return self.call("GET", "peers")

    def targets(self) -> Any:
        return self.call("GET", "targets")

    def target_history(self, name: str) -> Any:
        return self.call("GET", f"targets/{_part(name)}/history")

    def conflicts(self) -> Any:
        return self.call("GET", "conflicts")

    def conflicts_detected(self) -> int:
        return int(self.status()["conflicts_detected"])

    def resolve(self, conflict_id: str, who: str, keep: Any = None, value: Any = None) -> Any:
        body = {"keep": keep} if keep is not None else {"value": value}
        return self.call("POST", f"conflicts/{_part(conflict_id)}/resolve", body)

    def status(self) -> Any:
        return self.call("GET", "status")


def _part(text: str) -> str:
    return quote(text, safe="")


def _values(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
