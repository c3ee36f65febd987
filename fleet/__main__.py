"""`python -m fleet` is the `fleet` command; the local backend starts the suite this way."""

from fleet.cli import main

main()
