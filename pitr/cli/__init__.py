"""The `pitr` command line."""
