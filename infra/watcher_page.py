"""The watcher page: a read-only view of every review, served beside the codec server by `up`.

It shows what the Temporal Web UI cannot show out of the box: each review's stage, outcome,
who decided, its window deadline and the agencies it waits for, with the count of reviews at
each stage (the lifecycle as a row of boxes). A run that ended without an outcome (terminated,
failed, cancelled) shows as such, never as its last stage.

Read-only by construction: GET routes only (aiohttp answers anything else with 405), no form,
no script. It reads visibility alone (search attributes: unclassified, stored in plaintext),
never a payload, so it holds no key and needs none; it still listens on localhost only.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from temporalio.client import Client

from api.reviews import ENDED_WITHOUT_OUTCOME_NAMES as ENDED_WITHOUT_OUTCOME
from api.reviews import ReviewSummary
from domain.status import Stage

# Where a review can be, in lifecycle order; runs that ended without an outcome after them.
LIFECYCLE = [s.value for s in Stage]
REFRESH_SECONDS = 10
MAX_ROWS = 2000  # the newest runs; `list --json` or the Web UI for the rest
HEADINGS = (
    "review", "lab", "model", "stage", "outcome", "determined by", "window closes", "pending", "run", "disclosed",
)  # fmt: skip

Reviews = Callable[[], Awaitable[list[ReviewSummary]]]

# The Temporal Web UI keeps saved views in each browser, out of a server's reach; a link that carries
# its query is what can be handed out. `up` prints these.
SAVED_QUERIES = {
    "under review": 'ReviewStage = "UNDER_REVIEW"',
    "awaiting the NSA": 'ReviewStage = "AWAITING_DETERMINATION"',
    "decided by the policy's default": 'DeterminedBy = "policy-default"',
    "waiting for DoD": 'PendingAgencies = "dod" AND ExecutionStatus = "Running"',
    # Temporal's badge says Completed for both: a workflow cannot choose its execution status.
    "released": 'ReviewStage = "RELEASED"',
    "withdrawn by the lab": 'ReviewStage = "WITHDRAWN"',
    "ended out of view (terminated, failed, cancelled)": (
        'WorkflowType = "ModelReview" AND ExecutionStatus IN ("Terminated", "Failed", "Canceled", "TimedOut")'
    ),
}


def ui_links(ui_origin: str, namespace: str = "default") -> dict[str, str]:
    """The Web UI's workflow list, opened on each saved query."""
    base = f"{ui_origin.rstrip('/')}/namespaces/{quote(namespace)}/workflows?query="
    return {name: base + quote(query, safe="") for name, query in SAVED_QUERIES.items()}


def counts(rows: list[ReviewSummary]) -> dict[str, int]:
    """Reviews per stage (and per way of ending out of view), in lifecycle order, zeros included."""
    seen = Counter(r.where for r in rows)
    return {k: seen.get(k, 0) for k in [*LIFECYCLE, *ENDED_WITHOUT_OUTCOME, "?"] if k in LIFECYCLE or seen.get(k)}


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def render(rows: list[ReviewSummary], ui_link: Callable[[str], str] | None = None) -> str:
    e = html.escape
    boxes = "".join(
        f'<li class="{"ended" if k in ENDED_WITHOUT_OUTCOME else "stage"}" data-stage="{e(k)}">'
        f"<b>{n}</b><span>{e(k)}</span></li>"
        for k, n in counts(rows).items()
    )
    body = []
    for r in rows:
        rid = e(r.review_id)
        link = f'<a href="{e(ui_link(r.review_id))}">{rid}</a>' if ui_link else rid
        decided = {"nsa": "NSA", "policy-default": "policy default (NSA silent)"}.get(r.determined_by or "", "")
        body.append(
            f'<tr data-review="{rid}"><td>{link}</td><td>{e(r.lab or "")}</td>'
            f"<td>{e(r.model_name or '')} {e(r.model_version or '')}</td>"
            f'<td class="where">{e(r.where)}</td><td>{e(r.outcome or "")}</td><td>{e(decided)}</td>'
            f"<td>{e(_when(r.window_deadline))}</td><td>{e(', '.join(r.pending_agencies))}</td>"
            f"<td>{e(r.status or '')}</td><td>{e(_when(r.started_at))}</td></tr>"
        )
    headings = "".join(f"<th>{h}</th>" for h in HEADINGS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>frontier-review: reviews</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
ol {{ display: flex; gap: .5em; list-style: none; padding: 0; flex-wrap: wrap; }}
li {{ border: 1px solid #888; border-radius: 4px; padding: .4em .8em; text-align: center; }}
li b {{ display: block; font-size: 1.5em; }} li.ended {{ border-color: #b00; color: #b00; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: .3em .6em; text-align: left; }}
</style></head><body>
<h1>Reviews</h1>
<p>Read-only, refreshed every {REFRESH_SECONDS} s, from visibility (unclassified fields only).</p>
<ol id="stages">{boxes}</ol>
<table id="reviews"><thead><tr>{headings}</tr></thead><tbody>{"".join(body)}</tbody></table>
<p>{len(rows)} review run(s)</p>
</body></html>
"""


def make_app(reviews: Reviews, ui_link: Callable[[str], str] | None = None) -> web.Application:
    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text=render(await reviews(), ui_link), content_type="text/html")

    async def as_json(request: web.Request) -> web.StreamResponse:
        rows = await reviews()
        return web.json_response(
            {"counts": counts(rows), "reviews": [r.model_dump(mode="json") for r in rows]},
        )

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/reviews.json", as_json)
    return app


async def serve(client: Client, host: str, port: int, ui_origin: str | None = None) -> web.AppRunner:
    """The page for every review on `client`'s namespace, each row linked to the Web UI when there is one."""
    from api.reviews import list_reviews
    from infra.codec_server import start

    async def reviews() -> list[ReviewSummary]:
        return [r async for r in list_reviews(client, limit=MAX_ROWS)]

    def ui_link(review_id: str) -> str:
        query = quote(f'WorkflowId = "{review_id}"', safe="")
        return f"{ui_origin}/namespaces/{quote(client.namespace)}/workflows?query={query}"

    return await start(make_app(reviews, ui_link if ui_origin else None), host, port)
