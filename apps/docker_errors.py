"""Errors of the Docker Engine API (apps/docker_api.py, apps/docker_images.py).

A handler raises DockerError(status, message); the server answers `status`
with Docker's body `{"message": message}`, which the `docker` CLI prints as
"Error response from daemon: <message>". Statuses as Docker's daemon uses
them (errdefs → HTTP): 400 invalid parameter, 401 unauthorized, 403
forbidden, 404 not found, 409 conflict, 500 system, 501 not implemented,
503 unavailable.
"""

from __future__ import annotations


class DockerError(Exception):
    """An Engine API error: HTTP `status` and the `message` a person reads."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, str]:
        """Docker's error body."""
        return {"message": self.message}
