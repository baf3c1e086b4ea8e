"""The file-safety machinery under every bank and reservoir file.

- :mod:`.files` -- atomic replacement (temporary file, fsync, rename), checked opening of HDF5
  files, output-path checks, opening sidecar files that may have been planted (no links followed,
  owner and type checked);
- :mod:`.integrity` -- CRC-32 checksums of datasets and attributes, and the untrusted-file checks
  (no links followed, no external storage, declared sizes against stored bytes and a ceiling);
- :mod:`.journal` -- the authenticated rollback journal that makes in-place appends survive ``kill -9``;
- :mod:`.locking` -- one writer per bank, whoever asks (sidecar lock and ``flock`` on the bank file, a
  per-process registry for threads), shared locks for readers.

``docs/FORMAT.md`` states the rules these modules enforce (sidecar files, journal, recovery).
"""
