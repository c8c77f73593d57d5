"""Real file servers on loopback for firmware downloads and diagnostics uploads: FTP
(pyftpdlib, a test dependency) here; HTTP(S) is the built-in CSMS's `FileServer`."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

with warnings.catch_warnings():
    # pyftpdlib 2.2 still runs on the standard library's asyncore/asynchat on Python 3.11,
    # which warn that they are deprecated (our warnings are errors).
    warnings.filterwarnings("ignore", "The asyn(core|chat) module", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer


@dataclass
class FtpServer:
    root: Path
    port: int
    user: str
    password: str

    def url(self, path: str = "", *, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"ftp://{self.user}:{secret}@127.0.0.1:{self.port}/{path.lstrip('/')}"


@contextlib.contextmanager
def ftp_server(
    root: Path, user: str = "charger", password: str = "s3cret-ftp"
) -> Iterator[FtpServer]:
    """An FTP server on 127.0.0.1 (a free port) serving `root` read-write to one user."""
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm="elradfmw")
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer, "banner": "test"})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"timeout": 0.1, "handle_exit": False}, daemon=True
    )
    thread.start()
    try:
        yield FtpServer(root, server.address[1], user, password)
    finally:
        server.close_all()
        thread.join(timeout=5)
