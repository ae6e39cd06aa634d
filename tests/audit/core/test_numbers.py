"""``audit.core.numbers``: comma-separated numbers in config values."""

import pytest

from audit.core.numbers import parse_floats


def test_parse_floats():
    assert parse_floats("0.5, 0.25,0.5,", "1,2") == (0.25, 0.5)
    assert parse_floats("", "1,2") == () and parse_floats(" , ", "1,2") == ()
    assert parse_floats("1e-1,2", "1,2") == (0.1, 2.0)
    with pytest.raises(ValueError, match=r"'x' is not a number \(give e.g. 1,2\)"):
        parse_floats("1,x", "1,2")
