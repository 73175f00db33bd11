"""The studies: a `Study` opened from a params file, and one module per research question
returning its tables (data frames) and the facts its prose needs."""

from .study import Study, write_table

__all__ = ["Study", "write_table"]
