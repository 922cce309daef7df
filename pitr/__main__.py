"""`python -m pitr` runs the command line."""

from pitr.cli.main import main

main()
