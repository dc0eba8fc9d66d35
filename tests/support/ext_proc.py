"""ext_proc messages as Envoy sends them to the sidecar over gRPC."""

from __future__ import annotations

from envoy_data_plane.envoy.config.core.v3 import HeaderMap, HeaderValue
from envoy_data_plane.envoy.service.ext_proc.v3 import HttpHeaders, ProcessingRequest

METHOD = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


def headers_message(path: str, extra: dict[str, str] | None = None) -> ProcessingRequest:
    pairs = {":path": path, ":method": "POST", "content-type": "application/json", **(extra or {})}
    return ProcessingRequest(
        request_headers=HttpHeaders(
            headers=HeaderMap(
                headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
            )
        )
    )
