"""The one token redactor (:func:`redact`), re-exported as :func:`tastyrec.transport.redact`.

Its own module, with nothing but :mod:`re`, so that sans-I/O modules (the account messages)
use the same redactor as the transport without importing websockets. It changes no logging
configuration: callers pass what they log through it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ("REDACTED", "redact")

#: DXLink AUTH ``"token"`` and account-streamer ``"auth-token"`` values in a frame
_TOKEN_RE: Final = re.compile(r'"(token|auth-token)"\s*:\s*"[^"\']*"?')
#: the userinfo of a URL: ``scheme://user:password@`` (up to the last ``@`` of the authority)
_USERINFO_RE: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")
#: a query or fragment parameter whose name looks secret, e.g. ``?token=``, ``&api_key=``
_SECRET_PARAM_RE: Final = re.compile(
    r"([?&;#][^=&;#\s]*(?:token|key|secret|passw|pwd|auth|sig|cred)[^=&;#\s]*=)[^&;#\s'\"]*",
    re.IGNORECASE,
)
REDACTED: Final = "<redacted>"


def redact(text: str) -> str:
    """``text`` (a URL, a frame, a log argument, an error message) with its secrets replaced.

    Removes a URL's userinfo (``wss://user:TOKEN@host`` becomes ``wss://host``) and replaces the
    values of query and fragment parameters named like a token, key, secret, password,
    authorisation, signature or credential, and of ``"token"``/``"auth-token"`` JSON fields, with
    ``<redacted>``. Everything else is kept, so a redacted URL still says where it points.

    Example::

        >>> redact("wss://u:TOKEN@host/realtime?token=TOKEN&v=1")
        'wss://host/realtime?token=<redacted>&v=1'
    """
    if "@" in text:
        text = _USERINFO_RE.sub(r"\1", text)
    if "=" in text:
        text = _SECRET_PARAM_RE.sub(rf"\1{REDACTED}", text)
    if "token" in text:
        text = _TOKEN_RE.sub(rf'"\1":{REDACTED}', text)
    return text
