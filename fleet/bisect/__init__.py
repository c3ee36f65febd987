"""The bisection's search, with no I/O: which commits to measure next and when the culprit is known.

search (Pinpoint's three-valued k-ary search) and posterior (the default probabilistic search) share the
vocabulary of terms; fleet.run.bisection drives either on a Backend.
"""
