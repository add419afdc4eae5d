"""bulksend: send Collect document requests to every contact in a spreadsheet."""

__version__ = "0.1.0"
