"""Baselines: the reviewed files a run is judged against (store) and how N runs become one (record).
"""
