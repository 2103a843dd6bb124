__all__ = ['ttypes', 'constants', 'HandshakeService']
