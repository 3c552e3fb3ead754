"""The exceptions raised by the genomes package."""

from __future__ import annotations

__all__ = ["GenomeError", "HybridError", "NotApplicable"]


class HybridError(Exception):
    """A problem the user can fix: bad config, missing data, an existing run.

    The root of every user-facing error of both packages (``hybrid.errors``
    re-exports it). The CLI prints one line and exits with ``exit_code``.
    """

    exit_code = 2


class GenomeError(HybridError, ValueError):
    """A genome (or its file) breaks a rule of the genome contract.

    The message names the node, edge or key and the rule that does not hold.
    """


class NotApplicable(GenomeError):
    """A mutation has nothing to act on in this genome (e.g. no edge to split).

    Callers that draw mutations at random catch this and try another operator.
    """
