"""Suite-wide pytest setup.

The Kubernetes fixtures (``k8s_cluster``, ``namespace``) live in ``tests/k8s/fixtures.py``; loading them
here makes them available to every test folder (sqlctl tests included). Importing them is cheap.
"""

pytest_plugins = ["tests.k8s.fixtures"]
