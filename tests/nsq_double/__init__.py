"""In-memory nsqd and nsqlookupd doubles that speak the real protocols (TCP V2 and HTTP).

Typical use inside an async test::

    async with running_nsqd(with_lookupd=True, msg_timeout_s=0.5) as nsqd:
        reader = nsq.Reader(nsqd_tcp_addresses=[nsqd.tcp_address], ...)

``NsqdProcess`` runs the same server as a child process (``python -m tests.nsq_double``) and
``nsqd_in_thread`` runs it on a background event loop for synchronous code.
"""

from .harness import BackgroundNsqd, nsqd_in_thread, running_nsqd
from .lookupd import LookupdDouble, PeerInfo
from .options import NsqdOptions
from .process import NsqdProcess
from .server import NsqdDouble

__all__ = [
    "BackgroundNsqd",
    "LookupdDouble",
    "NsqdDouble",
    "NsqdOptions",
    "NsqdProcess",
    "PeerInfo",
    "nsqd_in_thread",
    "running_nsqd",
]
