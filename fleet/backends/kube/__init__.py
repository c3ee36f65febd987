"""The kube backend: cells as Kubernetes Jobs (backend), the API calls it makes as a port (port), their
implementation over the official client (client: the only module that imports `kubernetes`), the pure
readers of what the API returns (status) and the Job container's entry point (pod).
"""
