"""`xdpgw book FILE`: order books from a TotalView-ITCH 5.0 daily file or a MoldUDP64 capture."""

from __future__ import annotations

import json

import click

from xdpgw.errors import friendly


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--symbols", default=None, help="Only these books (AAPL,MSFT); default: every symbol.")
@click.option("--port", type=int, default=None, help="A capture: only UDP payloads to this port.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary with the `books` object as JSON.")
@click.option("--bbo", "bbo_out", default=None, help="Write the BBO stream to OUT.parquet or OUT.csv.")
@click.option("--top", type=int, default=20, show_default=True, help="Books shown in the text summary.")
@click.option("--no-progress", is_flag=True, help="No progress bar on long files.")
@friendly
def book(path, symbols, port, as_json, bbo_out, top, no_progress) -> None:
    """Build every book (L3 -> L2 -> BBO) from PATH and print the final tops."""
    from xdpgw.book.files import read_file, write_bbo

    syms = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    run = read_file(path, syms, port=port, keep_bbo=bbo_out is not None, progress=not no_progress)
    summary = run.summary()
    if bbo_out:
        recs = run.bbo_records()
        write_bbo(recs, bbo_out)
        summary["bbo_file"] = {"path": bbo_out, "rows": len(recs)}
    if as_json:
        click.echo(json.dumps(summary, default=str))
        return
    click.echo(format_summary(summary, top))


def format_summary(summary: dict, top: int = 20) -> str:
    """Counters, then the top of up to ``top`` books (most orders first)."""
    b = summary["books"]
    rate = summary.get("msgs_per_s")
    lines = [f"{summary['messages']:,} messages in {summary['duration_s']:.3f} s"
             + (f" ({rate / 1e6:.1f} M msgs/s)" if rate else "")
             + f"; {b['count']} books, {b['bbo']:,} BBO changes, {b['trades']:,} trades, {b['live_orders']:,} live orders"]
    if b["errors"]:
        lines.append("book errors: " + ", ".join(f"{k} {v}" for k, v in b["errors"].items()))
    if b["stale_all"]:
        lines.append("STALE: messages were lost and no book is pinpointed yet: every book may be wrong "
                     "(recover from a snapshot; see README)")
    elif b["stale"]:
        lines.append(f"STALE after a gap: {', '.join(b['stale'][:20])}" + (" ..." if len(b["stale"]) > 20 else ""))
    if "bbo_file" in summary:
        lines.append(f"wrote {summary['bbo_file']['rows']:,} BBO rows to {summary['bbo_file']['path']}")
    rows = sorted(b["symbols"].items(), key=lambda kv: -kv[1]["orders"])[:top]
    if rows:
        lines.append(f"{'symbol':<8} {'bid size':>10} {'bid':>12} {'ask':>12} {'ask size':>10} {'orders':>7}")
        for name, d in rows:
            bid = "-" if d["bid_price"] is None else f"{d['bid_price']:.4f}"
            ask = "-" if d["ask_price"] is None else f"{d['ask_price']:.4f}"
            lines.append(f"{name:<8} {d['bid_size'] or '':>10} {bid:>12} {ask:>12} {d['ask_size'] or '':>10} "
                         f"{d['orders']:>7}" + (" stale" if d.get("stale") else ""))
    return "\n".join(lines)
