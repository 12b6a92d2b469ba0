"""`python -m roomserver` is `roomserver`."""

from roomserver.cli import main

main()
