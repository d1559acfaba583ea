"""`python -m infra.cli`: the `strategies` command without the installed script."""

from infra.cli.main import main

main()
