"""A real Kubernetes control plane and a fake GPU kubelet for tests (see fixtures.py)."""
