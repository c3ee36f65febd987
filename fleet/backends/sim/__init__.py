"""The sim backend: answers each attempt from a scenario file (scenario) on a virtual clock (backend).
"""
