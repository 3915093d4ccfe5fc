"""The /v2/deployments and /v2/queue handlers of the REST API (routes in
rest.py): the running deployments, one deployment running or recently ended
(juggler's), and cancelling one (rolled back, or stopped where it is); the
apps with instances waiting to launch, and ending an app's launch delay.
"""

from __future__ import annotations

from aiohttp import web

from juggler.apps.plan import D
from juggler.apps.rest_backend import (
    Reply,
    _backend,
    _deployment_result,
    _flag,
    _path_id,
    _state,
)
from juggler.apps.views import deployment_json, queue_json

# -- deployments --------------------------------------------------------------------------------


async def list_deployments(request: web.Request) -> web.Response:
    """GET /v2/deployments: the running deployments, oldest first."""
    running = [d for d in _state(request).deployments.values() if d.state == D.IN_PROGRESS]
    return web.json_response(
        [deployment_json(d) for d in sorted(running, key=lambda d: (d.started_at, d.id))])


async def get_deployment(request: web.Request) -> web.Response:
    """GET /v2/deployments/{id}, juggler's (Marathon has no such GET): a
    running deployment as GET /v2/deployments lists it, with "state":
    "IN_PROGRESS"; one that ended lately, the core's record of its end
    ({"id", "version", "affectedApps", "state": SUCCEEDED|FAILED|CANCELLED,
    "reason", "rollback": the rolling-back deployment's id or null,
    "endedAt"}), so that a client that saw it leave the list can tell why;
    404 "DeploymentPlan x does not exist" otherwise (as DELETE)."""
    deployment_id = request.match_info["id"]
    state = _state(request)
    d = state.deployments.get(deployment_id)
    if d is not None and d.state == D.IN_PROGRESS:
        return web.json_response(deployment_json(d) | {"state": "IN_PROGRESS"})
    ended = getattr(state, "ended", {}).get(deployment_id)  # a core without the record: {}
    if ended is not None:
        return web.json_response(ended)
    raise Reply(404, {"message": f"DeploymentPlan {deployment_id} does not exist"})


async def cancel_deployment(request: web.Request) -> web.Response:
    """DELETE /v2/deployments/{id}: cancel and roll back (200, the rollback's
    deploymentResult; 202 without a body when there was nothing to roll
    back); ?force=true: stop it where it is (202). 404 "DeploymentPlan x does
    not exist"."""
    force = _flag(request, "force")
    rollback = await _backend(request).cancel(request.match_info["id"], force)
    if force or rollback is None:
        return web.Response(status=202)
    return _deployment_result(rollback)


# -- queue --------------------------------------------------------------------------------------


async def get_queue(request: web.Request) -> web.Response:
    """GET /v2/queue: apps with instances waiting to launch; the offers each
    could not use with ?embed=lastUnusedOffers."""
    offers = "lastUnusedOffers" in request.query.getall("embed", [])
    return web.json_response(queue_json(_state(request), embed_offers=offers))


async def reset_delay(request: web.Request) -> web.Response:
    """DELETE /v2/queue/{id}/delay: 204; 404 for an unknown app."""
    await _backend(request).reset_delay(_path_id(request.match_info["id"]))
    return web.Response(status=204)
