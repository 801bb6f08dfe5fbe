"""MoMa core: data, graphs, backbones, modules, training, composition and trust.

Usable as a plain library, without any server: everything the hub and the client share lives
here so that both sides agree on formats by construction.
"""

__version__ = "0.1.0"
