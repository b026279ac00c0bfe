"""The `/_mock/*` endpoints a test or a demo uses to steer and inspect a running mock.

    GET    /_mock/faults   the current faults
    POST   /_mock/faults   replace the faults (`proxy.mock.settings.replacing_faults`): named settings take
                           the given values, the other fault settings their defaults
    DELETE /_mock/faults   back to the start-up faults
    GET    /_mock/stats    requests per path, faults injected, disconnects, the last requests
    DELETE /_mock/stats    forget all that
"""

from __future__ import annotations

import orjson

from proxy.mock.answers import payloads
from proxy.mock.settings import replacing_faults
from proxy.mock.state import MockState


def handle_control(state: MockState, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    """The status and JSON body answering one control request."""
    if path == "/_mock/faults":
        return _faults(state, method, body)
    if path == "/_mock/stats":
        if method == "DELETE":
            state.log.clear()
        elif method != "GET":
            return 405, payloads.error_body(405, f"{method} {path}: use GET or DELETE")
        return 200, orjson.dumps(state.stats())
    return 404, payloads.error_body(404, f"no control endpoint {path}")


def _faults(state: MockState, method: str, body: bytes) -> tuple[int, bytes]:
    if method == "POST":
        try:
            settings = orjson.loads(body or b"{}")
            if not isinstance(settings, dict):
                raise ValueError("the body must be a JSON object of fault settings")
            state.set_faults(replacing_faults(settings, state.startup_faults))
        except (orjson.JSONDecodeError, ValueError) as exc:
            return 400, payloads.error_body(400, str(exc))
    elif method == "DELETE":
        state.reset_faults()
    elif method != "GET":
        return 405, payloads.error_body(405, f"{method} /_mock/faults: use GET, POST or DELETE")
    return 200, orjson.dumps(state.faults.to_json())
