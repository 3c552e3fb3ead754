"""The exceptions raised by the genomes package."""

from __future__ import annotations

__all__ = ["GenomeError", "NotApplicable"]


class GenomeError(ValueError):
    """A genome (or its file) breaks a rule of the genome contract.

    The message names the node, edge or key and the rule that does not hold.
    """


class NotApplicable(GenomeError):
    """A mutation has nothing to act on in this genome (e.g. no edge to split).

    Callers that draw mutations at random catch this and try another operator.
    """
