"""Tests of the template itself; `baking` and `torch_source` are shared with noxfile.py."""
