"""The daily job: ingest → matrix → models → recommend → store → report, and the offline evaluation.

Each stage module holds the work of one stage; ``pipeline`` lists the stages in order, times them and
publishes the run. Stages call ``encore.core`` for the computation, ``encore.dist`` to spread it over a
cluster and ``encore.io`` to read and write.
"""
