"""What a running gateway tells `extproc claude` about credentials.

The gateway's environment, not the launcher's terminal, decides which provider keys exist:
the keys are often exported only where `extproc up` runs. The sidecar answers `/credentials`
on its health port with this summary; it names variables, never their values.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from extproc.config import Config

PATH = "/credentials"


def summary(config: Config) -> dict[str, Any]:
    """Whether clients must bring credentials of their own, and which key variables are unset."""
    return {
        # A provider that passes the client's own credentials through (anthropic, no key).
        "passes_client_credentials": any(
            p.passes_client_auth and not p.access_key for p in config.providers
        ),
        "gateway_keys": bool(config.gateway_keys),
        # Requests routed to these providers fail (401) until the gateway restarts with them.
        "unset_key_variables": sorted(
            {
                p.missing_key_var
                for p in config.providers
                if p.missing_key_var and p.needs_key and not p.passes_client_auth
            }
        ),
    }


def from_gateway(config: Config) -> dict[str, Any] | None:
    """The running gateway's summary, or None when its health port can't be reached."""
    try:
        with urllib.request.urlopen(config.sidecar.health_url + PATH, timeout=2) as response:
            answer = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None
