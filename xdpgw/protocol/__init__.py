"""Sans-IO feed protocols: MoldUDP64 framing, ITCH 5.0 messages, sequencing, A/B arbitration, filters."""

from xdpgw.protocol.arbiter import Arbiter
from xdpgw.protocol.decode import Decoded, Decoder, decode_batch
from xdpgw.protocol.itch import DTYPES, SIZES, TYPES, encode_message, timestamps
from xdpgw.protocol.moldudp64 import (
    RetransmitRequest,
    encode_end_of_session,
    encode_heartbeat,
    encode_packet,
)
from xdpgw.protocol.sequencer import Sequencer
from xdpgw.protocol.subscribe import Subscription

__all__ = [
    "DTYPES", "SIZES", "TYPES", "Arbiter", "Decoded", "Decoder", "RetransmitRequest", "Sequencer",
    "Subscription", "decode_batch",
    "encode_end_of_session", "encode_heartbeat", "encode_message", "encode_packet", "timestamps",
]
