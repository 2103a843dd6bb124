__all__ = ['ttypes', 'constants', 'SessionService']
