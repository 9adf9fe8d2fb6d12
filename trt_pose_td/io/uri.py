"""Source URIs without their secrets: one redaction for everything that leaves the process.

:func:`redact` strips the user-info of every URI in a text (``rtsp://admin:pw@host/x`` ->
``rtsp://***@host/x``); logs, ``Frame.source`` (hence the JSONL and MQTT ``"source"`` field),
``/healthz``, ``/stats.json`` and the resolved config all go through it.
:func:`with_credentials` joins a user name and password (read from a file or an environment
variable by the service config) into a URI at open time, so only the capture reader holds them.
"""

from __future__ import annotations

import re
from typing import Optional
from urllib.parse import quote

#: scheme://USERINFO@ -- greedy up to the last "@" before the path, so a raw "@" inside a
#: password is stripped too.
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


def redact(text: str) -> str:
    """``text`` with the user-info of every ``scheme://user:pass@`` replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", text)


def has_credentials(uri: str) -> bool:
    return redact(uri) != uri


def with_credentials(uri: str, username: str = "", password: Optional[str] = None) -> str:
    """``uri`` with ``username[:password]@`` in its authority (percent-encoded).

    An empty ``username`` keeps the URI's own user name (``rtsp://admin@host`` + a password from
    a file); a URI that is not rtsp/http(s) cannot carry credentials: ValueError.
    """
    if not username and password is None:
        return uri
    if not uri.startswith(NETWORK_SCHEMES):
        raise ValueError(f"only rtsp:// and http(s):// sources take credentials, not {redact(uri)}")
    scheme, _, rest = uri.partition("://")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    own_user = userinfo.partition(":")[0] if at else ""
    user = quote(username, safe="") if username else own_user
    secret = "" if password is None else ":" + quote(password, safe="")
    return f"{scheme}://{user}{secret}@{host}{tail}"
