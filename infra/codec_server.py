"""The codec server: lets the Web UI and the `temporal` CLI show decoded payloads to
those who hold the token, in Temporal's remote-codec format (POST /encode, /decode with
`{"payloads": [...]}` in protobuf JSON).

Authentication: `Authorization: Bearer <token>`. CORS admits only the Web UI's origin(s).

The local dev server's Web UI has no login and cannot send a header, and whatever endpoint it is
given is served to anyone who asks its `/api/v1/settings` and shows in `ps` (it is a flag of the
dev server). So it never carries the token: `up` gives it `/local-ui/`, which answers only a
loopback peer whose request comes from an allowed Web UI origin. Anyone with a shell on this
host can reach that endpoint (as they can reach the local UI itself); nobody else can, and the
token stays in the key directory (0600).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from infra.codec import CodecError, EncryptionCodec

ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
LOCAL_UI = "/local-ui"


def make_app(
    codec: EncryptionCodec, token: str, allowed_origins: Iterable[str], *, local_ui: bool = False
) -> web.Application:
    """The codec endpoints (bearer token); with `local_ui`, the loopback-only `/local-ui/` ones too."""
    origins = frozenset(o.rstrip("/") for o in allowed_origins)

    def cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin in origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Vary"] = "Origin"
        return response

    async def preflight(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Origin") not in origins:
            return web.Response(status=403, text="origin not allowed")
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return cors(request, response)

    def authorised(request: web.Request) -> bool:
        if request.path.startswith(f"{LOCAL_UI}/"):
            # The local Web UI: no token, from this host only, and from the UI's page only.
            return is_loopback(request.remote) and request.headers.get("Origin") in origins
        header = request.headers.get("Authorization", "")
        presented = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(presented.encode(), token.encode())

    def endpoint(
        transform: Callable[[list], Awaitable[list]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not authorised(request):
                return cors(request, web.json_response({"error": "unauthorised"}, status=401))
            try:
                payloads = json_format.Parse(await request.text(), Payloads())
                result = Payloads(payloads=await transform(list(payloads.payloads)))
            except (json_format.ParseError, json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                return cors(request, web.json_response({"error": "body is not Payloads JSON"}, status=400))
            except CodecError as e:
                return cors(request, web.json_response({"error": str(e)}, status=422))
            except Exception as e:  # never the server's bare 500 page: the Web UI shows this line
                return cors(request, web.json_response({"error": f"cannot transform: {type(e).__name__}"}, status=422))
            body = json_format.MessageToJson(result)
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    for prefix in ("", LOCAL_UI) if local_ui else ("",):
        app.router.add_post(f"{prefix}/encode", endpoint(codec.encode))
        app.router.add_post(f"{prefix}/decode", endpoint(codec.decode))
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
    return app


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# How long stopping waits for a request still in progress (aiohttp's default is 60 s per connection):
# a decode or a page is milliseconds, so only a stalled or half-sent request is cut short, and a
# client that never finishes its request cannot hold Ctrl-C of `up` for minutes.
STOP_GRACE_SECONDS = 2.0


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` (the codec server, or the watcher page) until the returned runner's cleanup()."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=STOP_GRACE_SECONDS)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
