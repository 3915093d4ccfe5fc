"""The apps service: Marathon's model and REST API over juggler's Scheduler API.

A framework process (`juggler apps`) that keeps applications running: app
definitions, their versions and deployments live in the store (embedded or
etcd); deployments are planned by pure code; a Marathon-compatible REST API
serves existing Marathon clients.

    definition.py         an app as Marathon's JSON describes it (re-exports the five below)
    definition_model.py   the model: AppDefinition and its parts, Marathon's defaults, ids
    definition_fields.py  typed reads of a definition's JSON, collecting every error
    definition_parse.py   Marathon's JSON → AppDefinition: validation, defaults applied
    definition_render.py  AppDefinition → Marathon's JSON; PATCH
    groups.py             group definitions (POST/PUT /v2/groups)
    constraints.py        Marathon's placement constraints against offers
    instances.py          an app's instance and its lifecycle table
    plan.py               deployments: the pure plan of steps, rolling restarts, deadlines
    state.py              the pure core: (request | offer | status update | tick) → commands
    service.py            the shell: SDK framework, store, election, runs the core
    rest.py               the Marathon REST API (aiohttp) over the service: routes, serving
    rest_backend.py       what the API needs of the service; the handlers' shared helpers
    rest_apps.py          /v2/apps and /v2/tasks
    rest_groups.py        /v2/groups
    rest_deployments.py   /v2/deployments and /v2/queue
    rest_instance.py      /v2/info, /v2/leader, /ping, /metrics: about this instance
    rest_events.py        /v2/events (server-sent events)
    rest_proxy.py         standbys: requests proxied to the leader
"""
