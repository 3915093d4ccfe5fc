"""Docker's human-readable units, one place for every module that prints as
`docker ps` and `docker images` do (the CLI's tables, the Docker Engine API's
Status texts, image listings)."""

from __future__ import annotations


def human_duration(seconds: float) -> str:
    """A duration as Docker prints it (docker/go-units HumanDuration, which `docker
    ps` and `docker images` use): "Less than a second", "1 second", "5 seconds",
    "About a minute", "3 minutes", "About an hour", "5 hours", "3 days", "2 weeks",
    "4 months", "2 years". Hours are rounded to the nearest, as Go's does."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"
