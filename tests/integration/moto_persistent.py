"""moto's S3 server whose objects survive a kill: run as a script by
:class:`tests.integration.s3server.S3Server` with ``persistent=True``.

``python moto_persistent.py SNAPSHOT -H 127.0.0.1 -p PORT`` starts ``moto.server`` with the S3
buckets of ``SNAPSHOT`` if it exists, and rewrites ``SNAPSHOT`` (a pickle of the buckets, written
to a temporary file and renamed over it) after every request that may change them (any method but
GET and HEAD), *before* its response is sent. So a SIGKILL keeps exactly the requests that
completed, like a real store that makes a write durable before it answers: a PUT cut inside its
body (the process killed while reading it) never completes and is not kept; a request that
completed but whose answer was lost is kept (the client retries it, as against S3).

Why not moto's own request recorder (``replay-recording``): it records pyarrow's chunked PUT
bodies as empty, see :mod:`tests.integration.s3server`. Requests that may change the store run
one at a time (a lock around the request and its snapshot), so a snapshot never sees half of one;
reads run concurrently. (So a write whose body stalls holds the other writes back until its
connection ends; the tests' faults close connections, they do not stall them.) Test
infrastructure only; the snapshot is tiny (test recordings).
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from pathlib import Path
from typing import Any


def main(snapshot: Path, argv: list[str]) -> None:
    from flask import request as flask_request
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.utils import convert_to_flask_response
    from moto.s3.models import s3_backends
    from moto.server import main as moto_main

    buckets: dict[str, Any] = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].buckets
    if snapshot.exists():
        buckets.update(pickle.loads(snapshot.read_bytes()))
    lock = threading.Lock()
    handle = convert_to_flask_response.__call__
    temporary = snapshot.with_name(snapshot.name + ".tmp")

    def handle_and_keep(self: Any, args: Any = None, **kwargs: Any) -> Any:
        if flask_request.method in ("GET", "HEAD"):
            return handle(self, args, **kwargs)
        with lock:
            response = handle(self, args, **kwargs)
            temporary.write_bytes(pickle.dumps(buckets))
            os.replace(temporary, snapshot)  # a kill leaves the old snapshot or the new one
            return response

    convert_to_flask_response.__call__ = handle_and_keep  # type: ignore[method-assign]
    moto_main(argv)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
