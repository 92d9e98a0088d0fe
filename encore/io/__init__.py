"""Reading and writing, through fsspec so a local folder and ``s3://`` share one code path.

``lake`` (the partitioned input lake), ``legacy`` (the legacy aggregate CSV), ``uci`` (UCI Online Retail),
``pg`` / ``extract`` / ``pgload`` (PostgreSQL to lake and back), ``synth`` (the synthetic marketplace),
``store`` (run folders, the manifest, ``LATEST`` and the reader), ``s3`` (presigned links), and ``atomic``:
the one writer every output goes through, so a reader never sees half a file.
"""
