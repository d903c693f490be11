"""sqlctl: submit, follow, inspect and collect SQLMaster runs on a Kubernetes GPU cluster.

Import discipline: nothing here or in the command modules imports `kubernetes`, `torch` or
`sqlmaster.train`/`sqlmaster.evaluate` at module level, so `sqlctl --help` answers in well under
half a second. The Kubernetes client is imported inside the functions that talk to a cluster.
"""

__version__ = "0.1.0"
