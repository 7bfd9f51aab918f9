"""Hypothesis strategies shared by the tests of values, batches and routing."""

from __future__ import annotations

import datetime

from hypothesis import strategies as st

NOT_XML = "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r") + "\ufffe\uffff"
"""The characters besides surrogates that XML cannot carry."""


def xml_text(min_size: int = 0, max_size: int = 20) -> st.SearchStrategy[str]:
    """Strings XML can carry: any Unicode but surrogates and the characters of NOT_XML."""
    characters = st.characters(exclude_categories=("Cs",), exclude_characters=NOT_XML)
    return st.text(characters, min_size=min_size, max_size=max_size)


scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=20)
    | xml_text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.datetimes(min_value=datetime.datetime(1, 1, 1)).map(lambda d: d.replace(microsecond=0, fold=0))
)
"""XML-RPC scalars as a parser gives them back: bytes for base64, datetimes to the second."""

xmlrpc_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(xml_text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
"""Any XML-RPC value as a parser gives it back: arrays are lists, structs dicts."""
