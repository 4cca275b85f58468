"""Benchmarks of mlassets (not part of the package, not run by `make test`): `make bench`."""
