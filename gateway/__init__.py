"""dma-gateway: interoperability gateway for messaging services (EU DMA Art. 7)."""

__version__ = "0.1.0"
