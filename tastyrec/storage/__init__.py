"""The on-disk format of a recording, which writers (:mod:`tastyrec.record`) and readers
(:mod:`tastyrec.query`, :mod:`tastyrec.replay`, :mod:`tastyrec.catalog`) both stand on.

Modules:

* :mod:`.layout` — where files go: the hive layout, partition dates, file names.
* :mod:`.listing` — which files of a partition are current (a compacted file hides the files it
  replaces), over a local folder or an object-storage prefix.
* :mod:`.journal` — the write-ahead journal: segment framing, its writer and readers.
* :mod:`.parquet` — the Parquet settings of recorded files and the row-group writer.
* :mod:`.publish` — the one atomic publication routine (temporary file, ``fsync``, rename,
  ``fsync`` the folder) every file of a recording goes through.
* :mod:`.tables` — the columns of the bookkeeping tables (``_sessions``, ``_gaps``);
  :mod:`.bookkeeping` writes and reads their files.
* :mod:`.account_schema` — account payloads <-> Arrow.
* :mod:`.sql` — a recording as DuckDB views (one per event type, ``sessions``, ``gaps``).

This package imports nothing on its own: ``tastyrec sql`` loads :mod:`.sql`, :mod:`.layout` and
:mod:`.tables` without pyarrow. It depends on :mod:`tastyrec.events`, :mod:`tastyrec.schema` and
:mod:`tastyrec.exceptions` only (and :mod:`tastyrec.catalog`, which lists a recording's files).
"""
