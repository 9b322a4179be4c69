"""The maths: arrays in, arrays or small dataclasses out. Nothing here prints or parses."""
