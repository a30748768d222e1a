"""Paper-scale inputs prepared from their public sources: ``olmpool data prepare`` / ``check``.

One record per input (``olmpool.data.registry.INPUTS``): its public source and revision,
what is kept (the sample selection upstream does when it builds its data, done here once),
where the paper or upstream defines it, and a converter to the format our evaluators read.
Fetching is in ``olmpool.data.fetch`` (network, or a local mirror with ``--from``); the
converters work on local files and rows and are tested offline.
"""
