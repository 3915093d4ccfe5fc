"""The /v2/deployments and /v2/queue handlers of the REST API (routes in
rest.py): the running deployments, and cancelling one (rolled back, or
stopped where it is); the apps with instances waiting to launch, and ending
an app's launch delay.
"""

from __future__ import annotations

from aiohttp import web

from juggler.apps.plan import D
from juggler.apps.rest_backend import _backend, _deployment_result, _flag, _path_id, _state
from juggler.apps.views import deployment_json, queue_json

# -- deployments --------------------------------------------------------------------------------


async def list_deployments(request: web.Request) -> web.Response:
    """GET /v2/deployments: the running deployments, oldest first."""
    running = [d for d in _state(request).deployments.values() if d.state == D.IN_PROGRESS]
    return web.json_response(
        [deployment_json(d) for d in sorted(running, key=lambda d: (d.started_at, d.id))])


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
