"""The `pvoq` command."""
