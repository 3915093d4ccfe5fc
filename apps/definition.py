"""An app as Marathon's JSON describes it: the model, its defaults, validation, rendering.

Pure: no I/O. `parse_app(json_object)` turns a Marathon app definition (a dict
as json.loads gives it) into an `AppDefinition` with Marathon's defaults
applied, or raises `InvalidDefinition` listing every bad field in Marathon's 422
shape. `render_app(app)` gives the JSON object back, Marathon-shaped.

This module is where the rest of juggler imports these from; they live in:

    definition_model.py   the model (AppDefinition and its parts), Marathon's defaults,
                          ids (normalize_id), InvalidDefinition
    definition_fields.py  typed reads of a JSON object's fields, collecting every error
    definition_parse.py   parse_app: Marathon's JSON → AppDefinition, validation
    definition_ports.py   networks and container.portMappings (parse, render)
    definition_render.py  render_app: AppDefinition → Marathon's JSON; patch_app (PATCH)
    groups.py             GroupDefinition, parse_group (POST/PUT /v2/groups)
"""

from __future__ import annotations

from juggler.apps.definition_model import (
    CONTAINER_TYPES,
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_CPUS,
    DEFAULT_DISK,
    DEFAULT_INSTANCES,
    DEFAULT_MAX_LAUNCH_DELAY_SECONDS,
    DEFAULT_MEM,
    DEFAULT_MIN_HEALTHY_SECONDS,
    DEFAULT_PORT_DEFINITIONS,
    DEFAULT_PROGRESS_DEADLINE_SECONDS,
    HEALTH_PROTOCOLS,
    KILL_SELECTIONS,
    PORT_PROTOCOLS,
    RESERVED_NAMES,
    AppDefinition,
    Container,
    HealthCheckDef,
    InvalidDefinition,
    Network,
    PortDefinition,
    PortMapping,
    UnreachableStrategy,
    UpgradeStrategy,
    normalize_id,
)
from juggler.apps.definition_parse import parse_app
from juggler.apps.definition_render import patch_app, render_app
from juggler.apps.groups import GroupDefinition, parse_group

__all__ = [
    "CONTAINER_TYPES",
    "DEFAULT_BACKOFF_FACTOR",
    "DEFAULT_BACKOFF_SECONDS",
    "DEFAULT_CPUS",
    "DEFAULT_DISK",
    "DEFAULT_INSTANCES",
    "DEFAULT_MAX_LAUNCH_DELAY_SECONDS",
    "DEFAULT_MEM",
    "DEFAULT_MIN_HEALTHY_SECONDS",
    "DEFAULT_PORT_DEFINITIONS",
    "DEFAULT_PROGRESS_DEADLINE_SECONDS",
    "HEALTH_PROTOCOLS",
    "KILL_SELECTIONS",
    "PORT_PROTOCOLS",
    "RESERVED_NAMES",
    "AppDefinition",
    "Container",
    "GroupDefinition",
    "HealthCheckDef",
    "InvalidDefinition",
    "Network",
    "PortDefinition",
    "PortMapping",
    "UnreachableStrategy",
    "UpgradeStrategy",
    "normalize_id",
    "parse_app",
    "parse_group",
    "patch_app",
    "render_app",
]
