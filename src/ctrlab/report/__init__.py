"""Paper-vs-reproduced tables: ``python -m ctrlab.report`` or :func:`write_table`."""

from ctrlab.report.tables import write_table

__all__ = ["write_table"]
