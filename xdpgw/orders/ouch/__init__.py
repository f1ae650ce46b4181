"""OUCH 5.0 over SoupBinTCP 4.0: sans-IO codecs (``messages``, ``soupbin``), the venue connector
(``connector``) and a matching venue simulator (``simulator``, ``xdpgw venue``)."""
