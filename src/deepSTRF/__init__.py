"""deepSTRF: public sensory neural-response datasets behind one PyTorch API.

Importing the top-level package stays cheap; use ``deepSTRF.datasets``,
``deepSTRF.metrics`` and ``deepSTRF.utils.data`` for the functionality.
"""

__version__ = "0.2.0.dev0"
