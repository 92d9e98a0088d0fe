"""Everything that runs on a Dask cluster, and the only package that imports ``dask`` or ``distributed``.

``cluster`` finds or starts a cluster (local, an address, EC2, Coiled); ``blocks`` broadcasts values to
every worker with recovery from lost workers and maps block tasks with retries; ``frames`` reads files
into partitioned frames, shuffles them by key and gathers results; ``fit`` fits and scores the core's
models block by block on the workers. The functions it runs are plain functions from ``encore.core``
and ``encore.job``, passed in as arguments.
"""
