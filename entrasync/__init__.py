"""entrasync: keeps a workforce-analytics license store in line with Microsoft Entra ID."""

__version__ = "0.1.0"
