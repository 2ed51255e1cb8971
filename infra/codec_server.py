"""The codec server: lets the Web UI and the `temporal` CLI show decoded payloads to
those who hold the token, in Temporal's remote-codec format (POST /encode, /decode with
`{"payloads": [...]}` in protobuf JSON).

Authentication: `Authorization: Bearer <token>`. A browser UI that cannot send a header
(the local dev server's UI has no login) may use the endpoint `/t/<token>` instead; `up`
configures the local UI that way. CORS admits only the Web UI's origin(s).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from infra.codec import CodecError, EncryptionCodec

ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def make_app(codec: EncryptionCodec, token: str, allowed_origins: Iterable[str]) -> web.Application:
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
        presented = request.match_info.get("token")
        if presented is None:
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
            except (json_format.ParseError, json.JSONDecodeError):
                return cors(request, web.json_response({"error": "body is not Payloads JSON"}, status=400))
            except CodecError as e:
                return cors(request, web.json_response({"error": str(e)}, status=422))
            body = json_format.MessageToJson(result)
            return cors(request, web.Response(text=body, content_type="application/json"))

        return handle

    app = web.Application()
    for prefix in ("", "/t/{token}"):
        app.router.add_post(f"{prefix}/encode", endpoint(codec.encode))
        app.router.add_post(f"{prefix}/decode", endpoint(codec.decode))
        app.router.add_route("OPTIONS", f"{prefix}/encode", preflight)
        app.router.add_route("OPTIONS", f"{prefix}/decode", preflight)
    return app


async def start(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
