"""Thin PyTorch layer that trains recurrent networks on prior artifacts.

Not implemented yet: see the training issue.
"""

__all__: list[str] = []
