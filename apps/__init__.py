"""The apps service: Marathon's model and REST API over juggler's Scheduler API.

A framework process (`juggler apps`) that keeps applications running: app
definitions, their versions and deployments live in the store (embedded or
etcd); deployments are planned by pure code; a Marathon-compatible REST API
serves existing Marathon clients.

    definition.py   an app as Marathon's JSON describes it: parse, validate, render
    constraints.py  Marathon's placement constraints against offers
    instances.py    an app's instance and its lifecycle table
    plan.py         deployments: the pure plan of steps, rolling restarts, deadlines
    state.py        the pure core: (request | offer | status update | tick) → commands
    service.py      the shell: SDK framework, store, election, runs the core
    rest.py         the Marathon REST API (aiohttp) over the service
"""
