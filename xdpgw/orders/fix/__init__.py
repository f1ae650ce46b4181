"""FIX 4.4 venues on the QuickFIX engine: ``connector`` (our side, ``fix://`` URLs), ``acceptor`` (an
executor venue for tests and the demo), ``messages`` (orders ↔ FIX fields, reports → events),
``wire`` (frames checked byte by byte), ``engine`` (settings, data dictionary, logs)."""
