"""The speed harness behind `make bench` (`python -m bench.run`): what this package's stages cost on the machine it
runs on. It lives beside the library, not in it: it runs the recipes in `recipes/` as a user would, and it is not
installed with the package. Its figures, each with its machine, are in docs/bench.md."""
