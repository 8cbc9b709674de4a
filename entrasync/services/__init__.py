"""The service layer: one function per use case, each one transaction with its audit record."""
