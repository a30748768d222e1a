"""OlmPool reproduction: architectures, training, long-context evaluation and analysis.

Reproduces "Cracks in the Foundation: Seemingly Minor Architectural Choices Impact
Long Context Extension" (Bertsch et al., 2026).
"""

__version__ = "0.1.0"


class OlmPoolError(Exception):
    """The one error type of this project: the message says what is wrong and how to fix it."""
