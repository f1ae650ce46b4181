"""Order books from ITCH 5.0: L3 (orders) → L2 (levels) → BBO, live in the feed path and offline.

:class:`Books` (one C engine, one call per burst) applies decoded messages and answers queries;
:class:`BookFeed` puts it behind a ``FeedHandler`` for the Gateway (``--book``);
:mod:`xdpgw.book.files` reads daily files and captures (``xdpgw book FILE``).
"""

from xdpgw.book.engine import Books, BookUpdate
from xdpgw.book.live import BookBatch, BookFeed
from xdpgw.book.records import BBO, ERRORS, LEVEL, ORDER, TOP, TRADE

__all__ = ["BBO", "ERRORS", "LEVEL", "ORDER", "TOP", "TRADE", "BookBatch", "BookFeed", "BookUpdate", "Books"]
