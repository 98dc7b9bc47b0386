"""The outgoing request that auth modules rewrite before it is forwarded."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

Header = tuple[str, str]


@dataclass(slots=True)
class OutgoingRequest:
    """A request on its way upstream.

    ``path`` is the full upstream path (base URL prefix plus the canonical
    path) and is already percent-encoded; ``query`` is the raw query string as
    the agent sent it. Header names are lower-case. ``body`` is filled only
    for auth modules that sign the body; everything else streams.

    ``host`` is the ``Host`` header value the upstream will receive, for
    schemes that sign it. ``agent_headers`` are the agent's headers before
    credential headers were dropped, for schemes that read the agent's own
    signing parameters (AWS SigV4 credential scope); they are never
    forwarded.
    """

    method: str
    path: str
    query: str
    headers: list[Header] = field(default_factory=list)
    body: bytes | None = None
    host: str = ""
    agent_headers: list[Header] = field(default_factory=list)

    def get_header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def set_header(self, name: str, value: str) -> None:
        """Set header ``name``, replacing every earlier value of it."""
        name = name.lower()
        self.headers = [item for item in self.headers if item[0] != name]
        self.headers.append((name, value))

    def remove_header(self, name: str) -> None:
        """Remove every value of header ``name``."""
        name = name.lower()
        self.headers = [item for item in self.headers if item[0] != name]

    def set_query_param(self, name: str, value: str) -> None:
        """Set query parameter ``name`` to ``value``, replacing any the agent sent.

        The rest of the query is kept byte for byte: order, duplicates, ``+``
        and bare keys. The new parameter goes where the first old one was, or
        at the end.
        """
        encoded = f"{quote(name, safe='')}={quote(value, safe='')}"
        kept: list[str] = []
        placed = False
        for part in self.query.split("&") if self.query else []:
            if query_param_name(part) == name:
                if not placed:
                    kept.append(encoded)
                    placed = True
                continue
            kept.append(part)
        if not placed:
            kept.append(encoded)
        self.query = "&".join(kept)

    @property
    def target(self) -> str:
        """Return the request target: path plus ``?query`` when there is one."""
        return f"{self.path}?{self.query}" if self.query else self.path


def query_param_name(part: str) -> str:
    """Return the decoded name of one ``name=value`` query part."""
    from urllib.parse import unquote_plus

    return unquote_plus(part.split("=", 1)[0])
