"""Quorum arithmetic for n validators tolerating f Byzantine faults."""


def max_faulty(n: int) -> int:
    """The largest f with n >= 3f + 1."""
    if n < 1:
        raise ValueError("a validator set needs at least one validator")
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """Smallest quorum such that any two quorums intersect in at least f + 1 validators.

    For n = 3f + 1 this is 2f + 1.
    """
    f = max_faulty(n)
    return (n + f + 2) // 2  # ceil((n + f + 1) / 2)


def weak_quorum_size(n: int) -> int:
    """f + 1: enough matching messages that at least one came from an honest validator."""
    return max_faulty(n) + 1
