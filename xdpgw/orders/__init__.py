"""The order path: order model, venue connectors, pre-trade risk, throttle, routing, router, journal.

``model`` and ``venue`` are the contract every part builds on: an :class:`~xdpgw.orders.model.Order` is
what we ask a venue to do; a :class:`~xdpgw.orders.venue.Connector` sends it and reports back with
:mod:`~xdpgw.orders.venue` events, only from inside ``poll()`` on the caller's thread.
"""
