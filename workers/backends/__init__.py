"""Image generation backends (local diffusers, upstream DashScope) and what they share."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # Annotations only: importing a backend module (bench/gpu.py does, on a GPU machine
    # with neither) must not import Redis or orjson.
    from taskcore.contract import ImageOutcome
    from taskcore.store.claims import Claim


class TaskFailed(Exception):
    """The whole task failed; ``code`` and ``message`` go to the client as DashScope's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Backend(Protocol):
    """Makes the images of one claimed task."""

    def generate(self, claim: Claim) -> list[ImageOutcome]:
        """One outcome per image; raise :class:`TaskFailed` when the task fails as a whole."""
        ...
