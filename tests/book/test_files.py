"""`xdpgw book FILE`: daily files (raw, gzipped), MoldUDP64 captures, --symbols, --json, --bbo."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner

from tests.helpers import run_xdpgw
from xdpgw.cli.main import main
from xdpgw.tools.flow import order_flow, packets


@pytest.fixture(scope="module")
def small():
    return order_flow(20_000, n_symbols=40, seed=11)


def book_json(*args: str) -> dict:
    """`xdpgw book ARGS --json`, in this process (the command's own code; no interpreter start-up)."""
    res = CliRunner().invoke(main, ["book", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def write_pcap(path, payloads: list[bytes]) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    wrpcap(str(path), [Ether() / IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=4000, dport=9001) / Raw(p)
                       for p in payloads])


def test_daily_file_raw_gzip_and_capture_agree(small, ours_small, tmp_path):
    f = tmp_path / "day.itch"
    small.save(str(f))
    gz = tmp_path / "day.itch.gz"
    gz.write_bytes(gzip.compress(small.stream.tobytes()))
    pcap = tmp_path / "day.pcap"
    pk = packets(small, per_packet=30)
    write_pcap(pcap, [p for p in pk for _ in (0, 1)])  # every packet twice: an A/B capture
    raw, zipped, cap = book_json(str(f)), book_json(str(gz)), book_json(str(pcap))
    assert raw["file_kind"] == zipped["file_kind"] == "itch" and cap["file_kind"] == "pcap"
    assert raw["messages"] == len(small) == cap["messages"]
    assert cap["duplicates"] == len(small)  # line B: every message again
    assert raw["books"] == zipped["books"] == cap["books"]
    assert raw["books"] == ours_small
    aapl = raw["books"]["symbols"]["AAPL"]
    assert set(aapl) == {"bid_price", "bid_size", "ask_price", "ask_size", "orders"}
    assert isinstance(aapl["bid_price"], float) and raw["books"]["errors"] == {}


@pytest.fixture(scope="module")
def ours_small(small):
    from tests.book.conftest import run_stream

    books, _, _ = run_stream(small.stream)
    return json.loads(json.dumps(books.summary()))


def test_lost_packet_in_capture_marks_books_stale(small, tmp_path):
    pk = packets(small, per_packet=30)
    pcap = tmp_path / "lossy.pcap"
    write_pcap(pcap, pk[:100] + pk[101:])
    out = book_json(str(pcap))
    assert out["gaps"] == 1 and out["missing"] == 30
    b = out["books"]
    assert b["gaps"] == 1 and b["errors"]["unknown_order"] > 0
    # all were stale until unknown references pinpointed the books that lost orders: those stay stale
    assert not b["stale_all"] and 0 < len(b["stale"]) < 40
    for name, d in b["symbols"].items():
        assert (name in b["stale"]) == bool(d.get("stale")) == ("unknown_order" in d.get("flags", ())), name


def test_symbols_and_bbo_files(small, tmp_path):
    f = tmp_path / "day.itch"
    small.save(str(f))
    csv, pq = tmp_path / "bbo.csv", tmp_path / "bbo.parquet"
    out = book_json(str(f), "--symbols", "AAPL,MSFT", "--bbo", str(csv))
    assert sorted(out["books"]["symbols"]) == ["AAPL", "MSFT"]
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("seq,ts,locate,symbol,bid_price") and len(rows) == out["bbo_file"]["rows"] + 1
    assert {r.split(",")[3] for r in rows[1:]} == {"AAPL", "MSFT"}
    out2 = book_json(str(f), "--bbo", str(pq))
    import pyarrow.parquet as parquet

    t = parquet.read_table(str(pq))
    assert t.num_rows == out2["books"]["bbo"] and t.num_rows > len(rows)
    assert np.all(np.diff(t.column("seq").to_numpy().astype(np.int64)) > 0)


def test_text_summary_and_errors(small, tmp_path):
    f = tmp_path / "day.itch"
    small.save(str(f))
    res = CliRunner().invoke(main, ["book", str(f), "--top", "3"])
    assert res.exit_code == 0 and "books" in res.stdout
    assert len(res.stdout.splitlines()) == 5
    res = run_xdpgw(None, "book", str(tmp_path / "nope.itch"))  # as users run it: one line, what to do
    assert res.returncode == 2 and "xdpgw: error:" in res.stderr and "Traceback" not in res.stderr
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\xff" * 1000)
    res = run_xdpgw(None, "book", str(junk))
    assert res.returncode == 2 and "ITCH" in res.stderr and "Traceback" not in res.stderr
