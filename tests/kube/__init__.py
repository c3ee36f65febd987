"""Test harness for the kube backend: an API server emulator over real HTTP and a simulated cluster."""
