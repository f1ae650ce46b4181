"""`python -m xdpgw` runs the CLI."""

from xdpgw.cli.main import main

main()
