"""`python -m xdpgw` runs the CLI."""

from xdpgw.cli import main

main()
